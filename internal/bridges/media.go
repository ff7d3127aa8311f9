package bridges

import (
	"strings"

	"maunium.net/go/mautrix/event"
)

// MessageTypeFor is the Matrix message type for a bridged file of the
// given MIME type: image, video and audio by their top-level type, any
// other a plain file. The built-in bridges share it.
func MessageTypeFor(mimeType string) event.MessageType {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return event.MsgImage
	case strings.HasPrefix(mimeType, "video/"):
		return event.MsgVideo
	case strings.HasPrefix(mimeType, "audio/"):
		return event.MsgAudio
	}
	return event.MsgFile
}
