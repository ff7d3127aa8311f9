package telegramfake_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gotd/td/session"
	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/auth"
	"github.com/gotd/td/telegram/dcs"
	"github.com/gotd/td/telegram/updates"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// client is a real gotd client pointed at the fake, with an updates
// manager that delivers new messages' text on a channel.
type client struct {
	opts     telegram.Options
	manager  *updates.Manager
	received chan string
}

func newClient(t *testing.T, fake *telegramfake.Server, storage *session.StorageMemory) *client {
	block, _ := pem.Decode([]byte(fake.PublicKeyPEM()))
	if block == nil {
		t.Fatal("public key: no PEM block")
	}
	key, err := x509.ParsePKCS1PublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	keys := []telegram.PublicKey{{RSA: key}}
	c := &client{received: make(chan string, 16)}
	dispatcher := tg.NewUpdateDispatcher()
	dispatcher.OnNewMessage(func(_ context.Context, _ tg.Entities, u *tg.UpdateNewMessage) error {
		if m, ok := u.Message.(*tg.Message); ok && !m.Out {
			c.received <- m.Message
		}
		return nil
	})
	c.manager = updates.New(updates.Config{Handler: dispatcher})
	c.opts = telegram.Options{
		PublicKeys:     keys,
		Resolver:       dcs.Plain(dcs.PlainOptions{}),
		DCList:         fake.DCList(),
		DC:             telegramfake.DC,
		SessionStorage: storage,
		UpdateHandler:  c.manager,
		NoUpdates:      false,
	}
	return c
}

// run runs f with a connected client whose updates manager is running.
func (c *client) run(t *testing.T, f func(ctx context.Context, api *telegram.Client, self *tg.User) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := telegram.NewClient(1, "hash", c.opts)
	if err := api.Run(ctx, func(ctx context.Context) error {
		self, err := api.Self(ctx)
		if err != nil {
			return err
		}
		return f(ctx, api, self)
	}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-c.received:
		if got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message %q", want)
	}
}

// TestLoginMessagesAndCatchUp logs a real gotd client in with a phone number
// and code (a wrong code first), receives a message typed on the fake, sends
// one back, and after a disconnect gets the message sent meanwhile through
// updates.getDifference; a FLOOD_WAIT reaches the client as such. The
// first message is pushed: it arrives without the client asking.
func TestLoginMessagesAndCatchUp(t *testing.T) {
	fake := telegramfake.New(t)
	me := fake.AddUser("+15550001", "Mia", "Example")
	alice := fake.AddUser("+15550002", "Alice", "Liddell")
	storage := &session.StorageMemory{}
	c := newClient(t, fake, storage)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login := telegram.NewClient(1, "hash", c.opts)
	if err := login.Run(ctx, func(ctx context.Context) error {
		sent, err := login.Auth().SendCode(ctx, "+15550001", telegramfake.CodeSettings())
		if err != nil {
			return err
		}
		hash := sent.(*tg.AuthSentCode).PhoneCodeHash
		if _, err := login.Auth().SignIn(ctx, "+15550001", "00000", hash); !tgerr.Is(err, "PHONE_CODE_INVALID") {
			t.Errorf("wrong code: got %v, want PHONE_CODE_INVALID", err)
		}
		if _, err := login.Auth().SignIn(ctx, "+15550001", telegramfake.LoginCode, hash); err != nil {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	c.run(t, func(ctx context.Context, api *telegram.Client, self *tg.User) error {
		if self.ID != me {
			t.Errorf("self is %d, want %d", self.ID, me)
		}
		started := make(chan struct{})
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		go func() {
			done <- c.manager.Run(runCtx, api.API(), self.ID, updates.AuthOptions{OnStart: func(context.Context) { close(started) }})
		}()
		<-started
		// updates.getState, then the manager's first getDifference: the
		// client is caught up and the next message must be pushed.
		const syncs = 2
		for deadline := time.Now().Add(10 * time.Second); fake.Syncs(me) < syncs; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the client synced %d times, want %d", fake.Syncs(me), syncs)
			}
		}
		fake.Type(alice, me, "hello from Telegram")
		c.wait(t, "hello from Telegram")
		if got := fake.Syncs(me); got != syncs {
			t.Errorf("the message came through %d getDifference calls, not pushed", got-syncs)
		}

		peer := &tg.InputPeerUser{UserID: alice, AccessHash: fake.AccessHash(alice)}
		hi := &tg.MessagesSendMessageRequest{Peer: peer, Message: "hi Alice", RandomID: 1}
		first, err := api.API().MessagesSendMessage(ctx, hi)
		if err != nil {
			return err
		}
		repeat, err := api.API().MessagesSendMessage(ctx, hi) // same random_id: not sent again
		if err != nil {
			return err
		}
		if a, b := first.(*tg.UpdateShortSentMessage), repeat.(*tg.UpdateShortSentMessage); a.ID != b.ID {
			t.Errorf("a repeated random_id sent message %d after %d", b.ID, a.ID)
		}
		fake.FloodWait(tg.MessagesSendMessageRequestTypeID, 3)
		_, err = api.API().MessagesSendMessage(ctx, &tg.MessagesSendMessageRequest{Peer: peer, Message: "too fast", RandomID: 2})
		if wait, ok := tgerr.AsFloodWait(err); !ok || wait != 3*time.Second {
			t.Errorf("flood: got %v, want FLOOD_WAIT_3", err)
		}
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		c.manager.Reset()
		return nil
	})
	got := fake.Messages(alice, me)
	if len(got) != 2 || got[1].Message != "hi Alice" || got[1].Out {
		t.Fatalf("alice's chat with me: %+v", got)
	}

	fake.Type(alice, me, "while you were away")
	c.run(t, func(ctx context.Context, api *telegram.Client, self *tg.User) error {
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		go func() { done <- c.manager.Run(runCtx, api.API(), self.ID, updates.AuthOptions{}) }()
		c.wait(t, "while you were away")
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
}

// TestCloudPassword: a gotd client signs in to an account with a cloud
// password: the code alone answers SESSION_PASSWORD_NEEDED, a wrong
// password PASSWORD_HASH_INVALID (gotd's ErrPasswordInvalid), and the
// right one, proved by gotd's SRP client, logs the session in.
func TestCloudPassword(t *testing.T) {
	fake := telegramfake.New(t)
	mia := fake.AddUser("+15550001", "Mia", "Example")
	fake.SetPassword(mia, "hunter2")
	c := newClient(t, fake, &session.StorageMemory{})
	c.opts.NoUpdates = true
	api := telegram.NewClient(1, "test", c.opts)
	// Each password hash takes 100,000 rounds of PBKDF2: slow on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := api.Run(ctx, func(ctx context.Context) error {
		sent, err := api.Auth().SendCode(ctx, "+15550001", telegramfake.CodeSettings())
		if err != nil {
			return fmt.Errorf("sendCode: %w", err)
		}
		hash := sent.(*tg.AuthSentCode).PhoneCodeHash
		if _, err := api.Auth().SignIn(ctx, "+15550001", telegramfake.LoginCode, hash); !errors.Is(err, auth.ErrPasswordAuthNeeded) {
			return fmt.Errorf("signIn = %v, want SESSION_PASSWORD_NEEDED", err)
		}
		if _, err := api.Self(ctx); !tgerr.Is(err, "AUTH_KEY_UNREGISTERED") {
			return fmt.Errorf("users.getUsers before the password = %v, want AUTH_KEY_UNREGISTERED", err)
		}
		if _, err := api.Auth().Password(ctx, "hunter3"); !errors.Is(err, auth.ErrPasswordInvalid) {
			return fmt.Errorf("a wrong password = %v, want PASSWORD_HASH_INVALID", err)
		}
		authorization, err := api.Auth().Password(ctx, "hunter2")
		if err != nil {
			return fmt.Errorf("the right password: %w", err)
		}
		if self := authorization.User.(*tg.User); self.ID != mia {
			return fmt.Errorf("logged in as %d, want %d", self.ID, mia)
		}
		self, err := api.Self(ctx)
		if err != nil || self.ID != mia {
			return fmt.Errorf("users.getUsers after the password = %v, %v", self, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked, refused := fake.PasswordChecks(mia); checked != 2 || refused != 1 {
		t.Errorf("password checks = %d (%d refused), want 2 (1 refused)", checked, refused)
	}
}
