package rooms

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// SupportedVersions are the room versions this node can create and join.
var SupportedVersions = []id.RoomVersion{id.RoomV1, id.RoomV2, id.RoomV3, id.RoomV4, id.RoomV5, id.RoomV6, id.RoomV7, id.RoomV8, id.RoomV9, id.RoomV10, id.RoomV11, id.RoomV12}

// IsSupported reports whether v is a supported room version.
func IsSupported(v id.RoomVersion) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// CreateNonceKey is the m.room.create content key that holds random bytes
// in rooms whose ID is the create event's hash, so that every creation
// makes a distinct room.
const CreateNonceKey = "org.matrixos.nonce"

func randomNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateRoom creates a room: createContent is the m.room.create content
// (room_version is filled in), and rest are the events that follow it
// (the creator's join, power levels, presets, initial state, ...).
func (e *Engine) CreateRoom(ctx context.Context, version id.RoomVersion, creator id.UserID, createContent map[string]any, rest []Proto) (id.RoomID, []*Event, error) {
	if !IsSupported(version) {
		return "", nil, mxhttp.UnsupportedRoomV("room version %q is not supported", version)
	}
	r := newRoom("", version)
	if !version.RoomIDIsCreateEventID() {
		b := make([]byte, 18)
		rand.Read(b)
		r.id = id.RoomID("!" + base64.RawURLEncoding.EncodeToString(b) + ":" + e.signer.ServerName)
	}
	if createContent == nil {
		createContent = map[string]any{}
	}
	createContent["room_version"] = string(version)
	if version.RoomIDIsCreateEventID() {
		// The room ID is the create event's hash: two rooms created by one
		// user in the same millisecond would get the same one. The content
		// is part of the hash (the redaction algorithm keeps all of it), and
		// the spec lets servers add entropy there.
		createContent[CreateNonceKey] = randomNonce()
	}
	if version.CreatorInContent() {
		// Before v11 the creator is named in the content.
		createContent["creator"] = creator
	} else {
		delete(createContent, "creator")
	}
	cc, err := json.Marshal(createContent)
	if err != nil {
		return "", nil, mxhttp.BadJSON("invalid creation_content")
	}
	empty := ""
	r.mu.Lock()
	createEv, err := e.build(r, r.head, Proto{Type: "m.room.create", StateKey: &empty, Sender: creator, Content: cc})
	if err == nil {
		err = e.authorize(ctx, r, r.head, createEv)
	}
	if err != nil {
		r.mu.Unlock()
		return "", nil, err
	}
	r.id = createEv.RoomID
	e.mu.Lock()
	if _, exists := e.rooms[r.id]; exists {
		e.mu.Unlock()
		r.mu.Unlock()
		return "", nil, mxhttp.RoomInUse("room already exists")
	}
	e.rooms[r.id] = r
	e.mu.Unlock()
	evs, err := e.appendEvents(ctx, r, rest, []accepted{{ev: createEv, after: r.head.with(version, createEv)}})
	if err != nil {
		e.dropRoom(r)
		return "", nil, err
	}
	return r.id, evs, nil
}
