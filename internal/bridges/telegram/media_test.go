//go:build goolm

package telegram_test

import (
	"bytes"
	"testing"

	"maunium.net/go/mautrix/event"
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
