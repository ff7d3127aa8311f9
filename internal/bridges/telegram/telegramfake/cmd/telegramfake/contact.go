package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"time"

	"github.com/gotd/td/tg"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// contact is a scripted Telegram user who talks with one other user.
type contact struct {
	server   *telegramfake.Server
	id, peer int64
	picture  []byte // a PNG it sends when asked for "photo"
	// answered is how many of the chat's messages it has looked at.
	answered int
	greeted  bool
}

func newContact(server *telegramfake.Server, id, peer int64) (*contact, error) {
	picture, err := gradient(320)
	if err != nil {
		return nil, fmt.Errorf("contact's picture: %w", err)
	}
	return &contact{server: server, id: id, peer: peer, picture: picture}, nil
}

// pollEvery is how often the contact looks for new messages.
const pollEvery = 300 * time.Millisecond

// run answers until ctx ends.
func (c *contact) run(ctx context.Context) {
	ticker := time.NewTicker(pollEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			c.step()
		}
	}
}

// step greets the peer once their client is receiving updates (a chat's
// room appears with its first message after the login) and answers their
// new messages.
func (c *contact) step() {
	if !c.greeted && c.server.Syncs(c.peer) > 0 {
		c.greeted = true
		c.server.Type(c.id, c.peer, `Hi, I am Robin, a scripted contact of the fake Telegram. Write to me and I answer; send "photo" for a picture.`)
	}
	messages := c.server.Messages(c.id, c.peer)
	for _, m := range messages[c.answered:] {
		if !m.Out {
			c.answer(m)
		}
	}
	c.answered = len(messages)
}

// answer replies to one message of the peer.
func (c *contact) answer(m tg.Message) {
	if name, data, ok := c.server.File(c.id, m.ID); ok {
		c.server.Reply(c.id, c.peer, m.ID, fmt.Sprintf("Got your file %q (%d bytes).", name, len(data)))
		return
	}
	if _, ok := m.Media.(*tg.MessageMediaPhoto); ok {
		c.server.Reply(c.id, c.peer, m.ID, "Got your photo.")
		return
	}
	if m.Message == "photo" {
		c.server.SendPhoto(c.id, c.peer, c.picture, c.picture, "A picture from Robin")
		return
	}
	c.server.Reply(c.id, c.peer, m.ID, "You wrote: "+m.Message)
}

// gradient is a square PNG picture of a colour gradient.
func gradient(size int) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			img.Set(x, y, color.RGBA{R: uint8(255 * x / size), G: uint8(255 * y / size), B: 160, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
