package telegram

import (
	"context"
	"crypto/md5" // #nosec G501: Telegram's upload checksum, not a security measure
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/gotd/td/tg"
)

// Files cross the bridge as streams: a Matrix file goes to Telegram in
// parts as it downloads (uploadStream), and a Telegram file to Matrix
// through a temporary file (reupload), so the memory a transfer takes does
// not grow with the file.

const (
	// uploadPartSize is the size of each part of an upload (Telegram takes
	// parts of up to 512 KiB).
	uploadPartSize = 512 << 10
	// smallFileLimit is the largest file Telegram takes with
	// upload.saveFilePart; a larger one, or one whose size is not known
	// beforehand, goes with upload.saveBigFilePart.
	smallFileLimit = 10 << 20
)

var errEmptyFile = errors.New("the file is empty")

// uploadStream uploads a file to Telegram in parts as it reads them from r,
// holding two parts at a time (one read ahead, to know the last). size is
// the file's size, or -1 when it is not known: Telegram then takes a
// streamed upload, whose parts give a total of -1 until the last names it.
// A size that turns out wrong fails the upload.
func uploadStream(ctx context.Context, api *tg.Client, name string, r io.Reader, size int64) (tg.InputFileClass, error) {
	var idBytes [8]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return nil, fmt.Errorf("file ID: %w", err)
	}
	u := &upload{api: api, fileID: int64(binary.LittleEndian.Uint64(idBytes[:])), big: size < 0 || size > smallFileLimit, totalParts: -1}
	if size >= 0 {
		u.totalParts = int((size + uploadPartSize - 1) / uploadPartSize)
	}
	current, ahead := make([]byte, uploadPartSize), make([]byte, uploadPartSize)
	n, err := readPart(r, current)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if n == 0 {
		return nil, errEmptyFile
	}
	ended := err != nil
	checksum := md5.New() // #nosec G401
	var sent int64
	for {
		last, aheadN := ended, 0
		if !ended {
			aheadN, err = readPart(r, ahead)
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			ended, last = err != nil, aheadN == 0
		}
		if err := u.save(ctx, current[:n], last); err != nil {
			return nil, err
		}
		checksum.Write(current[:n])
		sent += int64(n)
		if last {
			break
		}
		current, ahead, n = ahead, current, aheadN
	}
	if size >= 0 && sent != size {
		return nil, fmt.Errorf("the file has %d bytes, not the %d its info says", sent, size)
	}
	if u.big {
		return &tg.InputFileBig{ID: u.fileID, Parts: u.parts, Name: name}, nil
	}
	return &tg.InputFile{ID: u.fileID, Parts: u.parts, Name: name, MD5Checksum: hex.EncodeToString(checksum.Sum(nil))}, nil
}

// upload is an upload in progress: its parts so far.
type upload struct {
	api        *tg.Client
	fileID     int64
	big        bool
	totalParts int // -1 while the size is not known
	parts      int
}

// save uploads the next part (the last one names the total of a streamed
// upload).
func (u *upload) save(ctx context.Context, data []byte, last bool) error {
	part := u.parts
	ok, err := withFloodWait(ctx, func() (bool, error) {
		if !u.big {
			return u.api.UploadSaveFilePart(ctx, &tg.UploadSaveFilePartRequest{FileID: u.fileID, FilePart: part, Bytes: data})
		}
		total := u.totalParts
		if total < 0 && last {
			total = part + 1
		}
		return u.api.UploadSaveBigFilePart(ctx, &tg.UploadSaveBigFilePartRequest{FileID: u.fileID, FilePart: part, FileTotalParts: total, Bytes: data})
	})
	if err != nil {
		return fmt.Errorf("saving part %d: %w", part, err)
	}
	if !ok {
		return fmt.Errorf("saving part %d: Telegram answered false", part)
	}
	u.parts++
	return nil
}

// readPart fills p from r; io.EOF means r ended (n may still be > 0).
func readPart(r io.Reader, p []byte) (int, error) {
	n, err := io.ReadFull(r, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// limitReader fails reads once more than left bytes came: the read that
// brings the first byte past the limit (it reads at most that one) returns
// its data, and every read after it tooLarge with none. An error returned
// with data could be lost: io.ReadFull drops it when the data fills its
// buffer.
type limitReader struct {
	r        io.Reader
	left     int64
	tooLarge error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, l.tooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, nil
	}
	return n, err
}

// limitWriter fails a write past limit bytes with tooLarge.
type limitWriter struct {
	w        io.Writer
	left     int64
	tooLarge error
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, l.tooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}
