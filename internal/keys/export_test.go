package keys

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// DeviceLists is deviceLists, for the package's external tests.
var DeviceLists = (*Service).deviceLists

// WrapFederationClient replaces the client the service reaches other
// servers with by wrap's answer, for the package's external tests; call it
// before the service reaches out.
func (s *Service) WrapFederationClient(wrap func(FederationClient) FederationClient) {
	s.fed = wrap(s.fed)
}

// NotePartialSent records that an update of user's device (its stream ID
// streamID) went to servers while roomID's state was partial.
func (s *Service) NotePartialSent(ctx context.Context, roomID id.RoomID, user id.UserID, device id.DeviceID, streamID int64, servers []string) error {
	return s.notePartialSent(ctx, []partialNote{{roomID: roomID,
		sentUpdate: sentUpdate{change: deviceChange{user: user, device: device, streamID: streamID}, servers: servers}}})
}

// PartialSent returns the stream IDs and servers of the updates recorded
// for roomID, oldest first.
func (s *Service) PartialSent(ctx context.Context, roomID id.RoomID) ([]int64, [][]string, error) {
	sent, err := s.partialSent(ctx, roomID)
	var ids []int64
	var servers [][]string
	for _, u := range sent {
		ids = append(ids, u.change.streamID)
		servers = append(servers, u.servers)
	}
	return ids, servers, err
}

// MaxPartialSent is maxPartialSent.
const MaxPartialSent = maxPartialSent
