//go:build goolm

package telegram_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestTelegramMedia: a Telegram photo arrives as an image in its largest
// size (not its thumbnail) with the caption, a voice note as audio marked
// as voice (MSC3245) with its duration, and a sticker as m.sticker named
// by its emoji; each decrypts to the content sent.
func TestTelegramMedia(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	h.login()
	thumb := []byte("\xff\xd8\xffthe thumbnail")
	full := []byte("\xff\xd8\xffthe photo in its largest size")
	fake.SendPhoto(h.alice, h.mia, thumb, full, "the view")
	portal := env.WaitPortal("Alice Liddell")
	photoEvt := h.waitEvent(portal, "alice's photo", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == h.aliceMX && msg.MsgType == event.MsgImage
	})
	msg := message(photoEvt)
	if msg.Body != "the view" || msg.Info == nil || msg.Info.Width != 1280 || msg.Info.MimeType != "image/jpeg" {
		t.Errorf("photo = %+v (info %+v), want the caption, 1280 wide, image/jpeg", msg, msg.Info)
	}
	if got := h.downloadMatrixFile(msg); !bytes.Equal(got, full) {
		t.Errorf("photo arrived as %q, want the largest size %q", got, full)
	}

	voice := []byte("OggS a voice note")
	fake.SendVoice(h.alice, h.mia, voice, 3)
	voiceEvt := h.waitEvent(portal, "alice's voice note", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && msg.MsgType == event.MsgAudio
	})
	msg = message(voiceEvt)
	if msg.MSC3245Voice == nil || msg.MSC1767Audio == nil || msg.MSC1767Audio.Duration != 3000 || msg.Info.Duration != 3000 {
		t.Errorf("voice note = %s, want MSC3245 voice and a 3000 ms duration", voiceEvt.Content.VeryRaw)
	}
	if got := h.downloadMatrixFile(msg); !bytes.Equal(got, voice) {
		t.Errorf("voice note arrived as %q, want %q", got, voice)
	}

	sticker := []byte("RIFF a webp sticker")
	fake.SendSticker(h.alice, h.mia, sticker, "😺")
	stickerEvt := h.waitEvent(portal, "alice's sticker", func(evt *event.Event) bool {
		return evt.Type == event.EventSticker
	})
	msg = message(stickerEvt)
	if msg == nil || msg.Body != "😺" || msg.Info == nil || msg.Info.Width != 512 {
		t.Fatalf("sticker = %s, want its emoji as the body and 512 wide", stickerEvt.Content.VeryRaw)
	}
	if got := h.downloadMatrixFile(msg); !bytes.Equal(got, sticker) {
		t.Errorf("sticker arrived as %q, want %q", got, sticker)
	}
}

// TestTelegramMediaToTelegram: Matrix media goes to Telegram as what it
// is, from the encrypted portal: an image as a photo, a voice message
// (MSC3245) as a voice note, a video as a streamable video, a WebP sticker
// as a sticker, and a file as a document with its name and MIME type, each
// caption kept and each content as sent.
func TestTelegramMediaToTelegram(t *testing.T) {
	h := newHarness(t)
	env, fake := h.env, h.fake
	h.login()
	fake.Type(h.alice, h.mia, "send me things")
	portal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(portal, h.aliceMX, "send me things")

	cases := []struct {
		name    string
		evtType event.Type
		content event.MessageEventContent
		data    []byte
		check   func(t *testing.T, media tg.InputMediaClass)
	}{{
		name:    "image",
		evtType: event.EventMessage,
		content: event.MessageEventContent{MsgType: event.MsgImage, Body: "the view from here", FileName: "view.jpg",
			Info: &event.FileInfo{MimeType: "image/jpeg", Width: 800, Height: 600}},
		data: []byte("\xff\xd8\xffa photo from Matrix"),
		check: func(t *testing.T, media tg.InputMediaClass) {
			if _, ok := media.(*tg.InputMediaUploadedPhoto); !ok {
				t.Errorf("image went as %T, want inputMediaUploadedPhoto", media)
			}
		},
	}, {
		name:    "voice",
		evtType: event.EventMessage,
		content: event.MessageEventContent{MsgType: event.MsgAudio, Body: "Voice message",
			Info: &event.FileInfo{MimeType: "audio/ogg", Duration: 4200}, MSC3245Voice: &event.MSC3245Voice{},
			MSC1767Audio: &event.MSC1767Audio{Duration: 4200}},
		data: []byte("OggS a voice message from Matrix"),
		check: func(t *testing.T, media tg.InputMediaClass) {
			doc, ok := media.(*tg.InputMediaUploadedDocument)
			if !ok || doc.MimeType != "audio/ogg" {
				t.Fatalf("voice message went as %T %+v, want an audio/ogg document", media, media)
			}
			audio, ok := attribute[*tg.DocumentAttributeAudio](doc.Attributes)
			if !ok || !audio.Voice || audio.Duration != 4 {
				t.Errorf("voice message attributes = %+v, want audio with voice and 4 s", doc.Attributes)
			}
		},
	}, {
		name:    "video",
		evtType: event.EventMessage,
		content: event.MessageEventContent{MsgType: event.MsgVideo, Body: "a clip", FileName: "clip.mp4",
			Info: &event.FileInfo{MimeType: "video/mp4", Duration: 7000, Width: 640, Height: 360}},
		data: []byte("....ftypmp42 a video from Matrix"),
		check: func(t *testing.T, media tg.InputMediaClass) {
			doc, ok := media.(*tg.InputMediaUploadedDocument)
			if !ok || doc.MimeType != "video/mp4" || doc.ForceFile {
				t.Fatalf("video went as %T %+v, want a video/mp4 document not forced to a file", media, media)
			}
			video, ok := attribute[*tg.DocumentAttributeVideo](doc.Attributes)
			if !ok || video.Duration != 7 || video.W != 640 || video.H != 360 || !video.SupportsStreaming {
				t.Errorf("video attributes = %+v, want 7 s, 640x360, streaming", doc.Attributes)
			}
		},
	}, {
		name:    "sticker",
		evtType: event.EventSticker,
		content: event.MessageEventContent{Body: "🐱", Info: &event.FileInfo{MimeType: "image/webp", Width: 512, Height: 512}},
		data:    []byte("RIFF a webp sticker from Matrix"),
		check: func(t *testing.T, media tg.InputMediaClass) {
			doc, ok := media.(*tg.InputMediaUploadedDocument)
			if !ok || doc.MimeType != "image/webp" {
				t.Fatalf("sticker went as %T %+v, want an image/webp document", media, media)
			}
			if sticker, ok := attribute[*tg.DocumentAttributeSticker](doc.Attributes); !ok || sticker.Alt != "🐱" {
				t.Errorf("sticker attributes = %+v, want a sticker standing for 🐱", doc.Attributes)
			}
		},
	}, {
		name:    "file",
		evtType: event.EventMessage,
		content: event.MessageEventContent{MsgType: event.MsgFile, Body: "the minutes", FileName: "minutes.pdf",
			Info: &event.FileInfo{MimeType: "application/pdf"}},
		data: []byte("%PDF-1.7 minutes from Matrix"),
		check: func(t *testing.T, media tg.InputMediaClass) {
			doc, ok := media.(*tg.InputMediaUploadedDocument)
			if !ok || doc.MimeType != "application/pdf" || !doc.ForceFile {
				t.Fatalf("file went as %T %+v, want an application/pdf document forced to a file", media, media)
			}
			if name, ok := attribute[*tg.DocumentAttributeFilename](doc.Attributes); !ok || name.FileName != "minutes.pdf" {
				t.Errorf("file attributes = %+v, want the file name minutes.pdf", doc.Attributes)
			}
		},
	}}
	wantCaption := map[string]string{"image": "the view from here", "video": "a clip", "file": "the minutes"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := len(fake.Messages(h.alice, h.mia))
			h.sendMedia(portal, tc.evtType, tc.content, tc.data)
			sent := h.waitTelegram("the Matrix "+tc.name, func(m tg.Message) bool {
				return m.Media != nil && !slices.ContainsFunc(fake.Messages(h.alice, h.mia)[:seen], func(old tg.Message) bool { return old.ID == m.ID })
			})
			tc.check(t, fake.SentMedia(sent.ID))
			if sent.Message != wantCaption[tc.name] {
				t.Errorf("caption = %q, want %q", sent.Message, wantCaption[tc.name])
			}
			if _, got, ok := fake.File(h.alice, sent.ID); !ok || !bytes.Equal(got, tc.data) {
				t.Errorf("content on Telegram = %q (ok %v), want %q", got, ok, tc.data)
			}
		})
	}
}

// attribute finds a document attribute of type A.
func attribute[A tg.DocumentAttributeClass](attributes []tg.DocumentAttributeClass) (A, bool) {
	for _, a := range attributes {
		if found, ok := a.(A); ok {
			return found, true
		}
	}
	var zero A
	return zero, false
}

// sendMedia uploads data encrypted and sends content (its file filled in)
// from the admin's device.
func (h *harness) sendMedia(room id.RoomID, evtType event.Type, content event.MessageEventContent, data []byte) id.EventID {
	h.t.Helper()
	ef := attachment.NewEncryptedFile()
	upload, err := h.env.Admin.UploadBytes(context.Background(), ef.Encrypt(data), "application/octet-stream")
	if err != nil {
		h.t.Fatalf("upload: %v", err)
	}
	content.File = &event.EncryptedFileInfo{EncryptedFile: *ef, URL: upload.ContentURI.CUString()}
	if content.Info != nil && content.Info.Size == 0 {
		content.Info.Size = len(data)
	}
	// Wrapped in event.Content: mautrix's canonical JSON drops the empty
	// object of MSC3245's voice key from a bare struct.
	return h.sendContent(room, evtType, &event.Content{Parsed: &content})
}

// TestTelegramFilesStream: with a 1 MiB limit configured, a Matrix file
// without info.size goes to Telegram as it downloads (a streamed upload)
// and arrives whole, and one past the limit, also without info.size, is
// stopped on the way with a notice in the room: nothing of it is sent,
// and the next file still goes.
func TestTelegramFilesStream(t *testing.T) {
	h := newHarnessWith(t, "max_file_size_mib: 1\n")
	env, fake := h.env, h.fake
	h.login()
	fake.Type(h.alice, h.mia, "send me files")
	portal := env.WaitPortal("Alice Liddell")
	env.WaitMessage(portal, h.aliceMX, "send me files")

	unsized := bytes.Repeat([]byte("a file of no stated size\n"), 30000) // 750 kB
	h.sendMedia(portal, event.EventMessage, event.MessageEventContent{MsgType: event.MsgFile, Body: "unsized.txt", FileName: "unsized.txt"}, unsized)
	sent := h.waitTelegram("the file without info.size", func(m tg.Message) bool { return m.Media != nil })
	if name, got, ok := fake.File(h.alice, sent.ID); !ok || name != "unsized.txt" || !bytes.Equal(got, unsized) {
		t.Errorf("file on Telegram = %q, %d bytes (ok %v), want unsized.txt with %d", name, len(got), ok, len(unsized))
	}
	if _, big := fake.SentMedia(sent.ID).(*tg.InputMediaUploadedDocument).File.(*tg.InputFileBig); !big {
		t.Errorf("a file of unknown size went as %T, want a streamed upload (inputFileBig)", fake.SentMedia(sent.ID).(*tg.InputMediaUploadedDocument).File)
	}

	uploaded := fake.Uploaded(h.mia)
	tooLarge := bytes.Repeat([]byte("x"), 3<<20)
	h.sendMedia(portal, event.EventMessage, event.MessageEventContent{MsgType: event.MsgFile, Body: "huge.bin", FileName: "huge.bin"}, tooLarge)
	h.waitEvent(portal, "the bot's notice that the file is too large", func(evt *event.Event) bool {
		msg := message(evt)
		return msg != nil && evt.Sender == env.Bot && strings.Contains(msg.Body, "the bridge carries files up to 1 MiB")
	})
	if got := fake.Uploaded(h.mia) - uploaded; got > 1<<20 {
		t.Errorf("%d bytes of the too-large file were uploaded, want at most the 1 MiB limit", got)
	}

	after := []byte("the next file")
	h.sendMedia(portal, event.EventMessage, event.MessageEventContent{MsgType: event.MsgFile, Body: "next.txt", FileName: "next.txt"}, after)
	next := h.waitTelegram("the file after the too-large one", func(m tg.Message) bool { return m.Media != nil && m.ID != sent.ID })
	if name, got, _ := fake.File(h.alice, next.ID); name != "next.txt" || !bytes.Equal(got, after) {
		t.Errorf("the file after the too-large one = %q %q", name, got)
	}
	if n := len(slices.DeleteFunc(fake.Messages(h.alice, h.mia), func(m tg.Message) bool { return m.Media == nil })); n != 2 {
		t.Errorf("%d files on Telegram, want 2 (the too-large one not sent)", n)
	}
}
