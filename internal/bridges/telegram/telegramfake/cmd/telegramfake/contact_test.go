package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/tg"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// TestContactAnswers: the scripted contact answers a text, a file and a
// request for a photo, each once.
func TestContactAnswers(t *testing.T) {
	server := telegramfake.New(t)
	user := server.AddUser(userPhone, "Alex", "Example")
	robinID := server.AddUser(contactPhone, "Robin", "Script")
	robin, err := newContact(server, robinID, user)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); robin.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	hello := server.Type(user, robinID, "hello")
	waitFor(t, server, user, robinID, func(m tg.Message) bool { return replyTo(m) == hello && m.Message == "You wrote: hello" })
	file := server.SendFile(user, robinID, "cat.png", "image/png", []byte("not really a cat"), "")
	waitFor(t, server, user, robinID, func(m tg.Message) bool {
		return replyTo(m) == file && m.Message == `Got your file "cat.png" (16 bytes).`
	})
	server.Type(user, robinID, "photo")
	waitFor(t, server, user, robinID, func(m tg.Message) bool {
		_, ok := m.Media.(*tg.MessageMediaPhoto)
		return ok && m.Message == "A picture from Robin"
	})
	// Each message is answered once: three of the user's, three answers.
	var answers int
	for _, m := range server.Messages(user, robinID) {
		if !m.Out {
			answers++
		}
	}
	if answers != 3 {
		t.Errorf("%d answers, want 3", answers)
	}
}

// TestSetupPrintsNetworkSection: the printed network section names the
// fake's address, data center and key, indented as YAML's block scalar.
func TestSetupPrintsNetworkSection(t *testing.T) {
	server := telegramfake.New(t)
	var out bytes.Buffer
	printSetup(&out, server)
	for _, want := range []string{
		"    dc_address: " + server.Addr + "\n",
		"    dc_id: 2\n",
		"    public_key: |\n        -----BEGIN RSA PUBLIC KEY-----\n",
		"the code " + telegramfake.LoginCode,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("setup lacks %q:\n%s", want, out.String())
		}
	}
}

func replyTo(m tg.Message) int {
	if h, ok := m.ReplyTo.(*tg.MessageReplyHeader); ok {
		return h.ReplyToMsgID
	}
	return 0
}

// waitFor waits until user's chat with peer has a message from peer that
// matches.
func waitFor(t *testing.T, server *telegramfake.Server, user, peer int64, match func(tg.Message) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range server.Messages(user, peer) {
			if !m.Out && match(m) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no matching answer in %+v", server.Messages(user, peer))
}
