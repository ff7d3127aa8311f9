package telegramfake

import (
	"bytes"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// maxPartSize is the largest upload part Telegram takes (512 KiB).
const maxPartSize = 512 << 10

// saveBigFilePart takes a part of a big file (over 10 MiB) or of a
// streamed upload, whose size is not known beforehand: its parts give a
// total of -1 until the last one names it (then no part past it is taken).
func (s *Server) saveBigFilePart(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UploadSaveBigFilePartRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	if err := checkPart(r.FilePart, r.Bytes); err != nil {
		return nil, err
	}
	if r.FileTotalParts == 0 || r.FileTotalParts < -1 || (r.FileTotalParts > 0 && r.FilePart >= r.FileTotalParts) {
		return nil, tgerr.New(400, "FILE_PARTS_INVALID")
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
	if r.FileTotalParts > 0 {
		s.uploadTotals[key] = r.FileTotalParts
	}
	return boolResult(true), nil
}

// checkPart refuses a part Telegram would: a negative number, no bytes,
// or more than 512 KiB.
func checkPart(part int, data []byte) error {
	switch {
	case part < 0:
		return tgerr.New(400, "FILE_PART_INVALID")
	case len(data) == 0:
		return tgerr.New(400, "FILE_PART_EMPTY")
	case len(data) > maxPartSize:
		return tgerr.New(400, "FILE_PART_TOO_BIG")
	}
	return nil
}

// Uploaded is how many bytes of file parts a user's clients have uploaded
// (a part sent again, as a client retrying a call does, counted once).
func (s *Server) Uploaded(user int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploaded[user]
}
