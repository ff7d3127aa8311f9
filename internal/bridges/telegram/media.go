package telegram

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gotd/td/telegram/downloader"
	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/bridges"
)

// fileTooLarge is why a file past the bridge's limit is not carried.
func fileTooLarge(limit int64) error {
	return fmt.Errorf("%w: the bridge carries files up to %d MiB", bridgev2.ErrMediaTooLarge, limit>>20)
}

// document is the file of a message, if it has one.
func document(m *tg.Message) (*tg.Document, bool) {
	media, ok := m.Media.(*tg.MessageMediaDocument)
	if !ok {
		return nil, false
	}
	doc, ok := media.Document.(*tg.Document)
	return doc, ok
}

// fileName is a document's file name ("file" without one).
func fileName(doc *tg.Document) string {
	for _, a := range doc.Attributes {
		if name, ok := a.(*tg.DocumentAttributeFilename); ok && name.FileName != "" {
			return name.FileName
		}
	}
	return "file"
}

// photo is the photo of a message, if it has one.
func photo(m *tg.Message) (*tg.Photo, bool) {
	media, ok := m.Media.(*tg.MessageMediaPhoto)
	if !ok {
		return nil, false
	}
	p, ok := media.Photo.(*tg.Photo)
	return p, ok
}

// isPhoto reports whether a message has a photo.
func isPhoto(m *tg.Message) bool {
	_, ok := photo(m)
	return ok
}

// largestSize is the largest of a photo's sizes with a known byte size
// (Telegram keeps a photo in several, from a thumbnail up).
func largestSize(p *tg.Photo) (typ string, bytes, w, h int, ok bool) {
	for _, s := range p.Sizes {
		var st string
		var size, sw, sh int
		switch s := s.(type) {
		case *tg.PhotoSize:
			st, size, sw, sh = s.Type, s.Size, s.W, s.H
		case *tg.PhotoSizeProgressive:
			if len(s.Sizes) == 0 {
				continue
			}
			st, size, sw, sh = s.Type, s.Sizes[len(s.Sizes)-1], s.W, s.H
		default:
			continue // stripped and path thumbnails have no file
		}
		if !ok || sw*sh > w*h {
			typ, bytes, w, h, ok = st, size, sw, sh, true
		}
	}
	return typ, bytes, w, h, ok
}

// convertPhoto bridges a Telegram photo in its largest size as an image.
func (tc *Client) convertPhoto(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *tg.Message, p *tg.Photo) (*event.MessageEventContent, error) {
	size, length, w, h, ok := largestSize(p)
	if !ok {
		return nil, fmt.Errorf("%w: the photo has no size to download", bridgev2.ErrMediaDownloadFailed)
	}
	location := &tg.InputPhotoFileLocation{ID: p.ID, AccessHash: p.AccessHash, FileReference: p.FileReference, ThumbSize: size}
	content, err := tc.reupload(ctx, portal, intent, location, int64(length), "photo.jpg", "image/jpeg")
	if err != nil {
		return nil, err
	}
	content.MsgType = event.MsgImage
	content.Info.Width, content.Info.Height = w, h
	if m.Message != "" {
		content.Body = m.Message
	}
	return content, nil
}

// convertDocument bridges a Telegram document as a Matrix file, image,
// video or audio by its MIME type (a voice note as audio marked as voice,
// MSC3245); the message's text is the file's caption. A sticker is
// bridged too, but sent as m.sticker (see stickerOf).
func (tc *Client) convertDocument(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *tg.Message, doc *tg.Document) (*event.MessageEventContent, error) {
	location := &tg.InputDocumentFileLocation{ID: doc.ID, AccessHash: doc.AccessHash, FileReference: doc.FileReference}
	content, err := tc.reupload(ctx, portal, intent, location, doc.Size, fileName(doc), doc.MimeType)
	if err != nil {
		return nil, err
	}
	for _, a := range doc.Attributes {
		switch a := a.(type) {
		case *tg.DocumentAttributeAudio:
			content.MsgType = event.MsgAudio
			content.Info.Duration = a.Duration * 1000
			content.MSC1767Audio = &event.MSC1767Audio{Duration: a.Duration * 1000}
			if a.Voice {
				content.MSC3245Voice = &event.MSC3245Voice{}
				content.Body, content.FileName = "Voice message", "voice.ogg"
			}
		case *tg.DocumentAttributeImageSize:
			content.Info.Width, content.Info.Height = a.W, a.H
		case *tg.DocumentAttributeSticker:
			content.Body = a.Alt
		}
	}
	if m.Message != "" {
		content.Body = m.Message
	}
	return content, nil
}

// isSticker reports whether a document is a sticker.
func isSticker(doc *tg.Document) bool {
	for _, a := range doc.Attributes {
		if _, ok := a.(*tg.DocumentAttributeSticker); ok {
			return true
		}
	}
	return false
}

// reupload downloads a Telegram file (upload.getFile) of a size Telegram
// gave, refusing it past the bridge's limit before downloading anything,
// and uploads it to Matrix, encrypted in an encrypted portal. The download
// goes part by part into a temporary file that is then uploaded from, so
// its memory does not grow with the file.
func (tc *Client) reupload(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, location tg.InputFileLocationClass, size int64, name, mimeType string) (*event.MessageEventContent, error) {
	limit := tc.connector.Config.maxFileSize()
	if size > limit {
		return nil, fileTooLarge(limit)
	}
	api, err := tc.client()
	if err != nil {
		return nil, err
	}
	var written int64
	mxc, file, err := intent.UploadMediaStream(ctx, portal.MXID, size, true, func(w io.Writer) (*bridgev2.FileStreamResult, error) {
		head := &headWriter{}
		out := &limitWriter{w: io.MultiWriter(w, head), left: limit, tooLarge: fileTooLarge(limit)}
		if _, err := downloader.NewDownloader().Download(api, location).Stream(ctx, out); err != nil {
			return nil, fmt.Errorf("%w: upload.getFile: %w", bridgev2.ErrMediaDownloadFailed, err)
		}
		written = limit - out.left
		if mimeType == "" {
			mimeType = http.DetectContentType(head.data)
		}
		return &bridgev2.FileStreamResult{FileName: name, MimeType: mimeType}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaReuploadFailed, err)
	}
	return &event.MessageEventContent{
		MsgType:  bridges.MessageTypeFor(mimeType),
		Body:     name,
		FileName: name,
		URL:      mxc,
		File:     file,
		Info:     &event.FileInfo{MimeType: mimeType, Size: int(written)},
	}, nil
}

// headWriter keeps the first 512 bytes written to it, for sniffing the
// content's type.
type headWriter struct{ data []byte }

func (h *headWriter) Write(p []byte) (int, error) {
	if room := 512 - len(h.data); room > 0 {
		h.data = append(h.data, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// sendFile uploads a Matrix file to Telegram as it downloads
// (uploadMatrixFile) and sends it as the media it is (see inputMedia), with
// the message's caption.
func (tc *Client) sendFile(ctx context.Context, api *tg.Client, peer tg.InputPeerClass, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	content := msg.Content
	name := content.FileName
	if name == "" {
		name = content.Body
	}
	if name == "" || strings.ContainsAny(name, "/\\") {
		name = "file"
	}
	mimeType := ""
	if content.Info != nil {
		mimeType = content.Info.MimeType
	}
	file, err := tc.uploadMatrixFile(ctx, api, content, name, &mimeType)
	if err != nil {
		return nil, err
	}
	req := &tg.MessagesSendMediaRequest{
		Peer:     peer,
		Media:    inputMedia(content, file, name, mimeType),
		Message:  caption(content),
		RandomID: randomID(msg.Event.ID),
	}
	result, err := withFloodWait(ctx, func() (tg.UpdatesClass, error) { return api.MessagesSendMedia(ctx, req) })
	if err != nil {
		return nil, refused("file", err)
	}
	sentID, date, err := sentMessage(result, req.RandomID)
	if err != nil {
		return nil, fmt.Errorf("messages.sendMedia: %w", err)
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        messageIDIn(inputChannelID(peer), sentID),
		SenderID:  ghostID(tc.selfID()),
		Timestamp: time.Unix(int64(date), 0),
	}}, nil
}

// uploadMatrixFile streams a Matrix file to Telegram: downloaded,
// decrypted and uploaded in parts as it arrives, with the bridge's limit
// enforced on the way (a file without info.size is refused with a notice
// as soon as it passes it). The file's hash is checked at its end, before
// anything is sent. A MIME type left empty is sniffed from the content.
func (tc *Client) uploadMatrixFile(ctx context.Context, api *tg.Client, content *event.MessageEventContent, name string, mimeType *string) (tg.InputFileClass, error) {
	limit := tc.connector.Config.maxFileSize()
	size := int64(-1)
	if content.Info != nil && content.Info.Size > 0 {
		size = int64(content.Info.Size)
	}
	if size > limit {
		return nil, fileTooLarge(limit)
	}
	body, err := tc.openMatrixFile(ctx, content)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	defer body.Close()
	source := bufio.NewReaderSize(&limitReader{r: body, left: limit, tooLarge: fileTooLarge(limit)}, 512)
	if *mimeType == "" {
		head, _ := source.Peek(512)
		*mimeType = http.DetectContentType(head)
	}
	file, err := uploadStream(ctx, api, name, source, size)
	if errors.Is(err, bridgev2.ErrMediaTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: uploading to Telegram: %w", bridgev2.ErrMediaReuploadFailed, err)
	}
	if err := body.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	return file, nil
}

// openMatrixFile opens a Matrix file's content as it downloads, decrypted
// for an encrypted file (whose Close then checks its hash).
func (tc *Client) openMatrixFile(ctx context.Context, content *event.MessageEventContent) (io.ReadCloser, error) {
	bot, ok := tc.connector.Bridge.Bot.(interface{ Matrix() *appservice.IntentAPI })
	if !ok {
		return nil, fmt.Errorf("the bridge's Matrix connector (%T) cannot stream media", tc.connector.Bridge.Bot)
	}
	uri := content.URL
	if content.File != nil {
		uri = content.File.URL
		if err := content.File.PrepareForDecryption(); err != nil {
			return nil, err
		}
	}
	parsed, err := uri.Parse()
	if err != nil {
		return nil, err
	}
	resp, err := bot.Matrix().Download(ctx, parsed)
	if err != nil {
		return nil, err
	}
	if content.File == nil {
		return resp.Body, nil
	}
	return content.File.DecryptStream(resp.Body), nil
}

// caption is a Matrix file message's caption: its body where it has a
// file name apart from it (MSC2530); a sticker's body describes it and
// is no caption.
func caption(content *event.MessageEventContent) string {
	if content.MsgType == event.CapMsgSticker || content.FileName == "" || content.Body == content.FileName {
		return ""
	}
	return content.Body
}

// photoTypes are the image types Telegram takes as photos (it recompresses
// them); other images (GIF, SVG) go as documents, unchanged.
var photoTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/webp": true}

// inputMedia is how an uploaded Matrix file goes to Telegram, by what the
// message is: an image as a photo, a voice message (MSC3245) as a voice
// note, audio and video as a document Telegram plays (with its duration
// and size), a WebP sticker as a sticker (another as a photo), and
// anything else as a document with its file name and MIME type.
func inputMedia(content *event.MessageEventContent, file tg.InputFileClass, name, mimeType string) tg.InputMediaClass {
	info := content.Info
	if info == nil {
		info = &event.FileInfo{}
	}
	seconds := info.Duration / 1000
	if seconds == 0 && content.MSC1767Audio != nil {
		seconds = content.MSC1767Audio.Duration / 1000
	}
	named := &tg.DocumentAttributeFilename{FileName: name}
	document := func(forceFile bool, attributes ...tg.DocumentAttributeClass) tg.InputMediaClass {
		return &tg.InputMediaUploadedDocument{File: file, MimeType: mimeType, ForceFile: forceFile, Attributes: attributes}
	}
	switch content.GetCapMsgType() {
	case event.MsgImage:
		if photoTypes[mimeType] {
			return &tg.InputMediaUploadedPhoto{File: file}
		}
	case event.CapMsgSticker:
		if mimeType == "image/webp" {
			return document(false,
				&tg.DocumentAttributeSticker{Alt: content.Body, Stickerset: &tg.InputStickerSetEmpty{}},
				&tg.DocumentAttributeImageSize{W: info.Width, H: info.Height}, named)
		}
		if photoTypes[mimeType] {
			return &tg.InputMediaUploadedPhoto{File: file}
		}
	case event.CapMsgVoice:
		return document(false, &tg.DocumentAttributeAudio{Voice: true, Duration: seconds})
	case event.MsgAudio:
		return document(false, &tg.DocumentAttributeAudio{Duration: seconds}, named)
	case event.MsgVideo, event.CapMsgGIF:
		return document(false, &tg.DocumentAttributeVideo{
			Duration: float64(info.Duration) / 1000, W: info.Width, H: info.Height, SupportsStreaming: true,
		}, named)
	}
	return document(true, named)
}

// sentMessage finds, in a send call's answer, the ID and date of the
// message the request with randomID made. Telegram answers in any of three
// shapes: UpdateShortSentMessage, or Updates or UpdatesCombined naming the
// message through an UpdateMessageID with the request's random ID.
func sentMessage(result tg.UpdatesClass, randomID int64) (id, date int, err error) {
	var updates []tg.UpdateClass
	switch r := result.(type) {
	case *tg.UpdateShortSentMessage:
		return r.ID, r.Date, nil
	case *tg.Updates:
		updates, date = r.Updates, r.Date
	case *tg.UpdatesCombined:
		updates, date = r.Updates, r.Date
	default:
		return 0, 0, fmt.Errorf("answered %T", result)
	}
	for _, u := range updates {
		if u, ok := u.(*tg.UpdateMessageID); ok && u.RandomID == randomID {
			id = u.ID
		}
	}
	if id == 0 {
		return 0, 0, fmt.Errorf("answered %T without the sent message's ID", result)
	}
	for _, u := range updates {
		var m tg.MessageClass
		switch u := u.(type) {
		case *tg.UpdateNewMessage:
			m = u.Message
		case *tg.UpdateNewChannelMessage:
			m = u.Message
		}
		if m, ok := m.(*tg.Message); ok && m.ID == id {
			date = m.Date
		}
	}
	return id, date, nil
}

// avatar is a user's profile photo, downloaded when bridgev2 finds it
// changed (by its photo ID); a user without one has their avatar removed.
func (tc *Client) avatar(u *tg.User) *bridgev2.Avatar {
	photo, ok := u.Photo.(*tg.UserProfilePhoto)
	if !ok {
		return &bridgev2.Avatar{Remove: true}
	}
	location := &tg.InputPeerPhotoFileLocation{
		Big:     true,
		Peer:    &tg.InputPeerUser{UserID: u.ID, AccessHash: u.AccessHash},
		PhotoID: photo.PhotoID,
	}
	return &bridgev2.Avatar{
		ID: networkid.AvatarID(strconv.FormatInt(photo.PhotoID, 10)),
		Get: func(ctx context.Context) ([]byte, error) {
			api, err := tc.client()
			if err != nil {
				return nil, err
			}
			var data bytes.Buffer
			if _, err := downloader.NewDownloader().Download(api, location).Stream(ctx, &data); err != nil {
				return nil, fmt.Errorf("downloading the profile photo of %d: %w", u.ID, err)
			}
			return data.Bytes(), nil
		},
	}
}
