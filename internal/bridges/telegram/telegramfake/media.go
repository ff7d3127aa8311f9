package telegramfake

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// upload is a file being uploaded in parts (upload.saveFilePart).
type upload map[int][]byte

// SendFile sends a document (a file with a name and MIME type, and an
// optional caption) from one user to another, as if sent from a Telegram
// app, and returns the message ID.
func (s *Server) SendFile(from, to int64, name, mimeType string, data []byte, caption string) int {
	s.mu.Lock()
	doc := s.addDocumentLocked(name, mimeType, data)
	s.mu.Unlock()
	id, _ := s.deliverMedia(context.Background(), from, []side{
		{owner: from, peer: &tg.PeerUser{UserID: to}, key: to},
		{owner: to, peer: &tg.PeerUser{UserID: from}, key: from},
	}, caption, &tg.MessageMediaDocument{Document: doc})
	return id
}

// SendPhoto sends a photo from one user to another: Telegram keeps it in
// two sizes, a 90-pixel thumbnail ("s", whose content is thumb) and the
// full 1280-pixel one ("y", data). It returns the message ID.
func (s *Server) SendPhoto(from, to int64, thumb, data []byte, caption string) int {
	s.mu.Lock()
	s.nextFile++
	id := s.nextFile
	s.photos[photoSize{id, "s"}] = bytes.Clone(thumb)
	s.photos[photoSize{id, "y"}] = bytes.Clone(data)
	photo := &tg.Photo{ID: id, AccessHash: id * 37, FileReference: []byte("ref"), Date: int(time.Now().Unix()), DCID: DC,
		Sizes: []tg.PhotoSizeClass{
			&tg.PhotoSize{Type: "s", W: 90, H: 90, Size: len(thumb)},
			&tg.PhotoSize{Type: "y", W: 1280, H: 1280, Size: len(data)},
		}}
	s.mu.Unlock()
	return s.sendMedia1(from, to, caption, &tg.MessageMediaPhoto{Photo: photo})
}

// photoSize names one size of a photo's content.
type photoSize struct {
	id   int64
	size string
}

// SendVoice sends a voice note (OGG Opus audio of a duration in seconds)
// from one user to another and returns the message ID.
func (s *Server) SendVoice(from, to int64, data []byte, seconds int) int {
	s.mu.Lock()
	doc := s.addDocumentLocked("", "audio/ogg", data)
	doc.Attributes = []tg.DocumentAttributeClass{&tg.DocumentAttributeAudio{Voice: true, Duration: seconds}}
	s.mu.Unlock()
	return s.sendMedia1(from, to, "", &tg.MessageMediaDocument{Document: doc})
}

// SendSticker sends a 512-pixel WebP sticker standing for an emoji from
// one user to another and returns the message ID.
func (s *Server) SendSticker(from, to int64, data []byte, emoji string) int {
	s.mu.Lock()
	doc := s.addDocumentLocked("sticker.webp", "image/webp", data)
	doc.Attributes = append(doc.Attributes,
		&tg.DocumentAttributeSticker{Alt: emoji, Stickerset: &tg.InputStickerSetEmpty{}},
		&tg.DocumentAttributeImageSize{W: 512, H: 512})
	s.mu.Unlock()
	return s.sendMedia1(from, to, "", &tg.MessageMediaDocument{Document: doc})
}

// sendMedia1 delivers media in the private chat of two users.
func (s *Server) sendMedia1(from, to int64, caption string, media tg.MessageMediaClass) int {
	id, _ := s.deliverMedia(context.Background(), from, []side{
		{owner: from, peer: &tg.PeerUser{UserID: to}, key: to},
		{owner: to, peer: &tg.PeerUser{UserID: from}, key: from},
	}, caption, media)
	return id
}

// SetPhoto gives a user a profile photo with the given content (an image).
func (s *Server) SetPhoto(user int64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextFile++
	s.files[s.nextFile] = bytes.Clone(data)
	s.users[user].Photo = &tg.UserProfilePhoto{PhotoID: s.nextFile, DCID: DC}
}

// File returns the name and content of the document of a message a user
// sees (of a photo: no name, its largest size), and whether it has one.
func (s *Server) File(user int64, msgID int) (string, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, _ := s.state[user].find(msgID)
	if m == nil {
		return "", nil, false
	}
	switch media := m.Media.(type) {
	case *tg.MessageMediaDocument:
		doc := media.Document.(*tg.Document)
		return documentName(doc), s.files[doc.ID], true
	case *tg.MessageMediaPhoto:
		return "", s.photos[photoSize{media.Photo.GetID(), "y"}], true
	}
	return "", nil, false
}

func documentName(doc *tg.Document) string {
	for _, a := range doc.Attributes {
		if name, ok := a.(*tg.DocumentAttributeFilename); ok {
			return name.FileName
		}
	}
	return ""
}

func (s *Server) addDocumentLocked(name, mimeType string, data []byte) *tg.Document {
	s.nextFile++
	id := s.nextFile
	s.files[id] = bytes.Clone(data)
	return &tg.Document{
		ID: id, AccessHash: id * 31, FileReference: []byte("ref"), Date: int(time.Now().Unix()),
		MimeType: mimeType, Size: int64(len(data)), DCID: DC,
		Attributes: []tg.DocumentAttributeClass{&tg.DocumentAttributeFilename{FileName: name}},
	}
}

// deliverMedia delivers a message with media and returns its ID and the
// sender's update.
func (s *Server) deliverMedia(ctx context.Context, from int64, sides []side, caption string, media tg.MessageMediaClass) (int, tg.UpdateClass) {
	var own tg.UpdateClass
	id := s.deliverWith(ctx, from, sides, caption, 0, func(m *tg.Message) { m.SetMedia(media) }, func(u tg.UpdateClass) { own = u })
	return id, own
}

func (s *Server) saveFilePart(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UploadSaveFilePartRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	if err := checkPart(r.FilePart, r.Bytes); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := uploadKey{c.user, r.FileID}
	if s.uploads[key] == nil {
		s.uploads[key] = upload{}
	}
	if _, again := s.uploads[key][r.FilePart]; !again {
		s.uploaded[c.user] += int64(len(r.Bytes))
	}
	s.uploads[key][r.FilePart] = bytes.Clone(r.Bytes)
	return boolResult(true), nil
}

// uploadKey is an upload's owner and the client's file ID.
type uploadKey struct {
	user int64
	file int64
}

// takeUploadLocked assembles and forgets an uploaded file: a small one
// (inputFile) must have the parts and MD5 checksum it names, a big one
// (inputFileBig) the parts and the total its last part named.
func (s *Server) takeUploadLocked(user int64, file tg.InputFileClass) ([]byte, string, error) {
	var key uploadKey
	var parts int
	var name, checksum string
	switch in := file.(type) {
	case *tg.InputFile:
		key, parts, name, checksum = uploadKey{user, in.ID}, in.Parts, in.Name, in.MD5Checksum
	case *tg.InputFileBig:
		key, parts, name = uploadKey{user, in.ID}, in.Parts, in.Name
		if total, ok := s.uploadTotals[key]; !ok || total != parts {
			return nil, "", tgerr.New(400, "FILE_PARTS_INVALID")
		}
	default:
		return nil, "", tgerr.New(400, "FILE_PARTS_INVALID")
	}
	uploaded := s.uploads[key]
	delete(s.uploads, key)
	delete(s.uploadTotals, key)
	var data []byte
	for i := range parts {
		part, ok := uploaded[i]
		if !ok {
			return nil, "", tgerr.New(400, "FILE_PARTS_INVALID")
		}
		data = append(data, part...)
	}
	if len(uploaded) != parts {
		return nil, "", tgerr.New(400, "FILE_PARTS_INVALID")
	}
	if sum := md5.Sum(data); checksum != "" && checksum != hex.EncodeToString(sum[:]) {
		return nil, "", tgerr.New(400, "MD5_CHECKSUM_INVALID")
	}
	return data, name, nil
}

// sendMedia sends an uploaded photo or document, as Telegram would show
// it: a photo in one size, a document with the attributes the client gave
// (a voice note, a video, a sticker, a file name). The input media is kept
// as the client sent it (SentMedia).
func (s *Server) sendMedia(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesSendMediaRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	var file tg.InputFileClass
	switch in := r.Media.(type) {
	case *tg.InputMediaUploadedDocument:
		file = in.File
	case *tg.InputMediaUploadedPhoto:
		file = in.File
	default:
		return nil, tgerr.New(400, "MEDIA_INVALID")
	}
	sides, err := s.sides(c.user, r.Peer)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	data, name, err := s.takeUploadLocked(c.user, file)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	media := s.storeMediaLocked(r.Media, name, data)
	s.mu.Unlock()
	id, own := s.deliverMedia(c.req.RequestCtx, c.user, sides, r.Message, media)
	s.mu.Lock()
	s.sentMedia[id] = r.Media
	s.mu.Unlock()
	answer := s.answer(c.user, own)
	if u, ok := own.(*tg.UpdateNewMessage); ok {
		answer.Updates = append([]tg.UpdateClass{&tg.UpdateMessageID{ID: u.Message.GetID(), RandomID: r.RandomID}}, answer.Updates...)
	}
	return answer, nil
}

// storeMediaLocked keeps an uploaded file as the photo or document the
// input media makes of it.
func (s *Server) storeMediaLocked(in tg.InputMediaClass, name string, data []byte) tg.MessageMediaClass {
	if _, ok := in.(*tg.InputMediaUploadedPhoto); ok {
		s.nextFile++
		id := s.nextFile
		s.photos[photoSize{id, "y"}] = data
		return &tg.MessageMediaPhoto{Photo: &tg.Photo{
			ID: id, AccessHash: id * 37, FileReference: []byte("ref"), Date: int(time.Now().Unix()), DCID: DC,
			Sizes: []tg.PhotoSizeClass{&tg.PhotoSize{Type: "y", W: 1280, H: 1280, Size: len(data)}},
		}}
	}
	doc := in.(*tg.InputMediaUploadedDocument)
	stored := s.addDocumentLocked(name, doc.MimeType, data)
	for _, a := range doc.Attributes {
		if fileName, ok := a.(*tg.DocumentAttributeFilename); ok {
			stored.Attributes[0] = fileName
		} else {
			stored.Attributes = append(stored.Attributes, a)
		}
	}
	return &tg.MessageMediaDocument{Document: stored}
}

// SentMedia is the media of a message a client sent with
// messages.sendMedia, as the client sent it (nil for none).
func (s *Server) SentMedia(msgID int) tg.InputMediaClass {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sentMedia[msgID]
}

func (s *Server) getFile(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UploadGetFileRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	data, ok := s.fileAt(r.Location)
	if !ok || r.Offset < 0 || r.Limit <= 0 {
		return nil, tgerr.New(400, "LOCATION_INVALID")
	}
	start := min(int(r.Offset), len(data))
	end := min(start+r.Limit, len(data))
	return &tg.UploadFile{Type: &tg.StorageFilePartial{}, Mtime: int(time.Now().Unix()), Bytes: data[start:end]}, nil
}

// fileAt is the content of a document, of a size of a photo or of a
// user's current profile photo.
func (s *Server) fileAt(location tg.InputFileLocationClass) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch loc := location.(type) {
	case *tg.InputPhotoFileLocation:
		data, ok := s.photos[photoSize{loc.ID, loc.ThumbSize}]
		return data, ok && loc.AccessHash == loc.ID*37
	case *tg.InputDocumentFileLocation:
		data, ok := s.files[loc.ID]
		return data, ok && loc.AccessHash == loc.ID*31
	case *tg.InputPeerPhotoFileLocation:
		peer, ok := loc.Peer.(*tg.InputPeerUser)
		if !ok {
			return nil, false
		}
		u, ok := s.users[peer.UserID]
		if !ok || u.AccessHash != peer.AccessHash {
			return nil, false
		}
		photo, ok := u.Photo.(*tg.UserProfilePhoto)
		if !ok || photo.PhotoID != loc.PhotoID {
			return nil, false
		}
		return s.files[loc.PhotoID], true
	}
	return nil, false
}
