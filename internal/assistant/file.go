package assistant

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
)

// sendFile uploads f (encrypted when the room is) and sends it in answer
// to req: an image as m.image, anything else as m.file.
func (s *session) sendFile(ctx context.Context, req request, f *File) error {
	encrypted, err := s.client.StateStore.IsEncrypted(ctx, req.evt.RoomID)
	if err != nil {
		return fmt.Errorf("is %s encrypted: %w", req.evt.RoomID, err)
	}
	content := &event.MessageEventContent{MsgType: event.MsgFile, Body: f.Name, FileName: f.Name,
		Info: &event.FileInfo{MimeType: f.MimeType, Size: len(f.Data), Width: f.Width, Height: f.Height}}
	if strings.HasPrefix(f.MimeType, "image/") {
		content.MsgType = event.MsgImage
	}
	data, mimeType := f.Data, f.MimeType
	var enc *attachment.EncryptedFile
	if encrypted {
		enc = attachment.NewEncryptedFile()
		data, mimeType = enc.Encrypt(f.Data), "application/octet-stream"
	}
	up, err := s.client.UploadBytesWithName(ctx, data, mimeType, f.Name)
	if err != nil {
		return fmt.Errorf("upload %s: %w", f.Name, err)
	}
	if enc != nil {
		content.File = &event.EncryptedFileInfo{EncryptedFile: *enc, URL: up.ContentURI.CUString()}
	} else {
		content.URL = up.ContentURI.CUString()
	}
	return s.sendContent(ctx, req, content)
}
