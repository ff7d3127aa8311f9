package mxhttp

import (
	"net/http"

	"maunium.net/go/mautrix/id"
)

// RoomID checks a room ID taken from a request: it must start with '!'
// and, like every identifier, fit in 255 bytes. A bad one is
// M_INVALID_PARAM.
func RoomID(v string) (id.RoomID, error) {
	if len(v) < 2 || v[0] != '!' || len(v) > 255 {
		return "", InvalidParam("invalid room ID %q", v)
	}
	return id.RoomID(v), nil
}

// RoomIDParam returns the room ID in the request path's {roomId}.
func RoomIDParam(r *http.Request) (id.RoomID, error) {
	return RoomID(r.PathValue("roomId"))
}
