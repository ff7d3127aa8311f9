package telegram

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/tg"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// TestUploadStream uploads files of known and unknown size to the fake
// from a source that makes its bytes as they are read and fails a read
// after its end: at no point has the upload read more than two parts ahead
// of what Telegram received (the file is never held whole), and the file
// Telegram assembles is the source's, whichever way it went (saveFilePart,
// saveBigFilePart with its total, or a streamed upload with -1 until the
// last part).
func TestUploadStream(t *testing.T) {
	fake := telegramfake.New(t)
	mia := fake.AddUser("+15550001", "Mia", "Example")
	alice := fake.AddUser("+15550002", "Alice", "Liddell")
	api := loggedIn(t, fake, "+15550001")
	cases := []struct {
		name      string
		size      int64
		knownSize bool
	}{
		{"small, size known", uploadPartSize + 1, true},
		{"one byte, size unknown", 1, false},
		{"streamed, size unknown", 3*uploadPartSize + 100, false},
		{"exact parts, size unknown", 2 * uploadPartSize, false},
		{"big, size known", smallFileLimit + 100, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			src := &watchedSource{t: t, size: tc.size, received: func() int64 { return fake.Uploaded(mia) }}
			src.start = fake.Uploaded(mia)
			size := int64(-1)
			if tc.knownSize {
				size = tc.size
			}
			file, err := uploadStream(ctx, api, "data.bin", src, size)
			if err != nil {
				t.Fatalf("uploadStream: %v", err)
			}
			if src.maxAhead > 2*uploadPartSize {
				t.Errorf("read up to %d bytes ahead of what Telegram received, want at most two parts (%d)", src.maxAhead, 2*uploadPartSize)
			}
			if _, big := file.(*tg.InputFileBig); big != (!tc.knownSize || tc.size > smallFileLimit) {
				t.Errorf("uploaded as %T", file)
			}
			randomID := int64(i + 1)
			result, err := api.MessagesSendMedia(ctx, &tg.MessagesSendMediaRequest{
				Peer:     &tg.InputPeerUser{UserID: alice, AccessHash: fake.AccessHash(alice)},
				Media:    &tg.InputMediaUploadedDocument{File: file, MimeType: "application/octet-stream"},
				RandomID: randomID,
			})
			if err != nil {
				t.Fatalf("messages.sendMedia: %v", err)
			}
			id, _, err := sentMessage(result, randomID)
			if err != nil {
				t.Fatal(err)
			}
			_, got, ok := fake.File(alice, id)
			if want := sourceBytes(0, tc.size); !ok || !bytes.Equal(got, want) {
				t.Errorf("Telegram assembled %d bytes (ok %v), want the source's %d", len(got), ok, len(want))
			}
		})
	}
}

// TestUploadStreamWrongSize: a file longer or shorter than its info says
// fails the upload.
func TestUploadStreamWrongSize(t *testing.T) {
	fake := telegramfake.New(t)
	fake.AddUser("+15550001", "Mia", "Example")
	api := loggedIn(t, fake, "+15550001")
	ctx := context.Background()
	for _, claimed := range []int64{100, 300} {
		src := bytes.NewReader(sourceBytes(0, 200))
		if _, err := uploadStream(ctx, api, "data.bin", src, claimed); err == nil {
			t.Errorf("a 200-byte file said to be %d bytes was uploaded", claimed)
		}
	}
	if _, err := uploadStream(ctx, api, "empty", bytes.NewReader(nil), -1); !errors.Is(err, errEmptyFile) {
		t.Errorf("empty file: %v, want errEmptyFile", err)
	}
}

// watchedSource makes size bytes (sourceBytes) as they are read, records
// how far its reads ran ahead of what Telegram received, and fails the
// test on a read after its end.
type watchedSource struct {
	t        *testing.T
	size     int64
	read     int64
	start    int64 // Telegram's received count before the upload
	received func() int64
	maxAhead int64
	ended    bool
}

func (s *watchedSource) Read(p []byte) (int, error) {
	if s.ended {
		s.t.Errorf("read again after the end")
		return 0, io.ErrUnexpectedEOF
	}
	if s.read == s.size {
		s.ended = true
		return 0, io.EOF
	}
	n := copy(p, sourceBytes(s.read, min(s.size, s.read+int64(len(p)))))
	s.read += int64(n)
	s.maxAhead = max(s.maxAhead, s.read-(s.received()-s.start))
	return n, nil
}

// sourceBytes are bytes from to end of a source's content.
func sourceBytes(from, end int64) []byte {
	out := make([]byte, end-from)
	for i := range out {
		offset := from + int64(i)
		out[i] = byte(offset*7 + offset/251)
	}
	return out
}

// loggedIn is the API of a gotd client logged in to the fake, for the
// test's length.
func loggedIn(t *testing.T, fake *telegramfake.Server, phone string) *tg.Client {
	t.Helper()
	config := Config{APIID: 1, APIHash: "test", DCAddress: fake.Addr, DCID: telegramfake.DC, PublicKey: fake.PublicKeyPEM()}
	opts, err := (&Connector{Config: config}).clientOptions()
	if err != nil {
		t.Fatal(err)
	}
	opts.SessionStorage = &session.StorageMemory{}
	opts.NoUpdates = true
	client := telegram.NewClient(config.APIID, config.APIHash, opts)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		err := client.Run(ctx, func(ctx context.Context) error {
			ready <- signIn(ctx, client, phone)
			<-ctx.Done()
			return nil
		})
		if err != nil {
			ready <- err
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := <-ready; err != nil {
		t.Fatalf("logging in to the fake: %v", err)
	}
	return client.API()
}

func signIn(ctx context.Context, client *telegram.Client, phone string) error {
	sent, err := client.Auth().SendCode(ctx, phone, telegramfake.CodeSettings())
	if err != nil {
		return fmt.Errorf("sendCode: %w", err)
	}
	code, ok := sent.(*tg.AuthSentCode)
	if !ok {
		return fmt.Errorf("sendCode answered %T", sent)
	}
	_, err = client.Auth().SignIn(ctx, phone, telegramfake.LoginCode, code.PhoneCodeHash)
	return err
}

// TestUploadStreamLimit: a file past the limit, read in reads that fill
// whole parts at once, fails the upload before any byte past the limit is
// sent (io.ReadFull drops an error that comes with a part's last bytes, so
// the limit must hold on the read after).
func TestUploadStreamLimit(t *testing.T) {
	fake := telegramfake.New(t)
	mia := fake.AddUser("+15550001", "Mia", "Example")
	api := loggedIn(t, fake, "+15550001")
	tooLarge := errors.New("too large")
	for _, limit := range []int64{100, uploadPartSize, 2*uploadPartSize + 1} {
		before := fake.Uploaded(mia)
		src := &limitReader{r: bytes.NewReader(sourceBytes(0, 4*uploadPartSize)), left: limit, tooLarge: tooLarge}
		if _, err := uploadStream(context.Background(), api, "data.bin", src, -1); !errors.Is(err, tooLarge) {
			t.Errorf("limit %d: uploadStream = %v, want the limit's error", limit, err)
		}
		if sent := fake.Uploaded(mia) - before; sent > limit {
			t.Errorf("limit %d: %d bytes uploaded", limit, sent)
		}
	}
}
