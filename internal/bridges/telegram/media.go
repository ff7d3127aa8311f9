package telegram

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gotd/td/telegram/downloader"
	"github.com/gotd/td/telegram/uploader"
	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/bridges"
)

// maxFileSize is the largest file the bridge carries either way. Telegram
// takes up to 2 GB, but the bridge holds a file in memory while it crosses.
const maxFileSize = 50 << 20

var errFileTooLarge = fmt.Errorf("%w: the bridge carries files up to %d MiB", bridgev2.ErrMediaTooLarge, maxFileSize>>20)

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
// gave, refusing it past maxFileSize before downloading anything, and
// uploads it to Matrix, encrypted in an encrypted portal.
func (tc *Client) reupload(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, location tg.InputFileLocationClass, size int64, name, mimeType string) (*event.MessageEventContent, error) {
	if size > maxFileSize {
		return nil, errFileTooLarge
	}
	api, err := tc.client()
	if err != nil {
		return nil, err
	}
	var data bytes.Buffer
	if _, err := downloader.NewDownloader().Download(api, location).Stream(ctx, &limitedWriter{w: &data, left: maxFileSize}); err != nil {
		return nil, fmt.Errorf("%w: upload.getFile: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	if mimeType == "" {
		mimeType = http.DetectContentType(data.Bytes())
	}
	mxc, file, err := intent.UploadMedia(ctx, portal.MXID, data.Bytes(), name, mimeType)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaReuploadFailed, err)
	}
	return &event.MessageEventContent{
		MsgType:  bridges.MessageTypeFor(mimeType),
		Body:     name,
		FileName: name,
		URL:      mxc,
		File:     file,
		Info:     &event.FileInfo{MimeType: mimeType, Size: data.Len()},
	}, nil
}

// limitedWriter fails a download that grows past what it may hold (a
// file larger than Telegram said).
type limitedWriter struct {
	w    *bytes.Buffer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errFileTooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// sendFile uploads a Matrix file to Telegram (upload.saveFilePart) and
// sends it as the media it is (see inputMedia) with the message's caption.
func (tc *Client) sendFile(ctx context.Context, api *tg.Client, peer tg.InputPeerClass, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	content := msg.Content
	if content.Info != nil && content.Info.Size > maxFileSize {
		return nil, errFileTooLarge
	}
	uri := content.URL
	if content.File != nil {
		uri = content.File.URL
	}
	data, err := tc.connector.Bridge.Bot.DownloadMedia(ctx, uri, content.File)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	if len(data) > maxFileSize {
		return nil, errFileTooLarge
	}
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
	if mimeType == "" {
		mimeType = http.DetectContentType(data)
	}
	file, err := uploader.NewUploader(api).FromBytes(ctx, name, data)
	if err != nil {
		return nil, fmt.Errorf("%w: upload.saveFilePart: %w", bridgev2.ErrMediaReuploadFailed, err)
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
