package rooms

import (
	"context"
	"slices"
)

// InPartialRoomWith reports whether server is one of the servers of a room
// whose state is still partial here and where a local user is joined or
// invited: a user of that server may be among the members this node does
// not know yet. It reads the rooms' sorted server lists (a local member
// joined puts this server in it); only a partial room where none is
// joined has its members read, for an invited one.
func (e *Engine) InPartialRoomWith(ctx context.Context, server string) bool {
	e.mu.Lock()
	var partial []*room
	for _, r := range e.rooms {
		if r.partial.Load() != nil {
			partial = append(partial, r)
		}
	}
	e.mu.Unlock()
	local := e.signer.ServerName
	for _, r := range partial {
		st := r.view()
		if _, ok := slices.BinarySearch(st.servers, server); !ok && !slices.Contains(r.partialServers(), server) {
			continue
		}
		if _, ok := slices.BinarySearch(st.servers, local); ok {
			return true
		}
		for u, m := range st.members {
			if m == "invite" && u.Homeserver() == local {
				return true
			}
		}
	}
	return false
}
