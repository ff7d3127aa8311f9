//go:build goolm

// Package bridgetest runs a built-in bridge end to end in a test: a real
// node (internal/testnode), the bridge's registration and config written as
// `matrixos bridge enable` writes them, the bridge itself in-process through
// internal/bridges/host, and an admin user whose client has a goolm crypto
// machine, so that tests talk to the bridge bot and read portals in
// encrypted rooms.
package bridgetest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/host"
	"github.com/matrixos/matrixos/internal/testnode"
)

// Timeout bounds each wait of the helpers.
const Timeout = 60 * time.Second

// Env is a node with one bridge running.
type Env struct {
	Node *testnode.Node
	// Admin is a server admin, with the bridge's admin permission; Device
	// is its encrypting device (use it to sync and send in encrypted rooms).
	Admin  *mautrix.Client
	Device *testnode.E2EEDevice
	// Bot is the bridge bot's user ID.
	Bot id.UserID
	// Kind is the bridge; Network is the connector of the current run.
	Kind    bridges.Kind
	Network bridgev2.NetworkConnector
	// Dir is the bridge's directory (config.yaml, bridge.db).
	Dir string
	// Log collects the bridge's log lines (printed when the test fails).
	Log *LogBuffer

	t    testing.TB
	stop func()
}

// Start starts a node, writes the bridge's files with networkConfig as the
// network section of its config (the connector's example config when
// empty), loads its registration and runs it until the test ends.
func Start(t testing.TB, kind bridges.Kind, networkConfig string) *Env {
	t.Helper()
	node := testnode.Start(t, testnode.SQLite)
	admin := node.RegisterAdmin("admin")
	if networkConfig == "" {
		networkConfig, _, _ = kind.NewNetwork().GetConfig()
	}
	files := bridges.Files{
		DataDir: node.Config.DataDir, ServerName: node.Config.ServerName, Name: kind.Name,
		Network: networkConfig, Admins: []id.UserID{admin.UserID}, ShareWithUnverified: true,
	}
	if err := files.Write(); err != nil {
		t.Fatalf("write bridge files: %v", err)
	}
	if err := node.ReloadAppservices(t.Context()); err != nil {
		t.Fatalf("load bridge registration: %v", err)
	}
	env := &Env{
		Node: node, Admin: admin, Kind: kind, t: t,
		Bot: id.NewUserID(kind.Name+"bot", node.Config.ServerName),
		Dir: bridges.Dir(node.Config.DataDir, kind.Name),
		Log: &LogBuffer{},
	}
	env.Device = testnode.NewE2EEDevice(t, "admin", admin)
	t.Cleanup(func() {
		env.Stop()
		if t.Failed() {
			t.Logf("bridge log:\n%s", env.Log.String())
		}
	})
	env.Run()
	return env
}

// Run starts the bridge (with a fresh connector) and waits until it is
// connected to the node; the test fails when it cannot start.
func (e *Env) Run() {
	e.t.Helper()
	if e.stop != nil {
		e.t.Fatal("bridgetest: the bridge is running already")
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.Network = e.Kind.NewNetwork()
	started := make(chan struct{})
	done := make(chan error, 1)
	opts := host.Options{
		Name: e.Kind.Name, Dir: e.Dir,
		RegistrationFile: bridges.RegistrationFile(e.Node.Config.DataDir, e.Kind.Name),
		HomeserverURL:    e.Node.URL, ServerName: e.Node.Config.ServerName,
		Network: e.Network, Log: e.Log, Debug: true,
		Started: func() { close(started) },
	}
	if os.Getenv("MATRIXOS_TEST_LOG") != "" {
		opts.Log = teeWriter{e.Log, os.Stderr}
	}
	go func() { done <- host.Run(ctx, opts) }()
	select {
	case <-started:
	case err := <-done:
		cancel()
		e.t.Fatalf("bridge %s did not start: %v\n%s", e.Kind.Name, err, e.Log.String())
	case <-time.After(Timeout):
		cancel()
		e.t.Fatalf("bridge %s did not start within %v\n%s", e.Kind.Name, Timeout, e.Log.String())
	}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("bridge %s stopped with: %v", e.Kind.Name, err)
		}
	}
}

// Stop stops the bridge (Run starts it again); it does nothing when the
// bridge is not running.
func (e *Env) Stop() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

// Restart stops the bridge and runs it again on the same files.
func (e *Env) Restart() {
	e.t.Helper()
	e.Stop()
	e.Run()
}

// DM creates an encrypted direct chat of the admin with the bridge bot
// and waits until the bot has joined it.
func (e *Env) DM() id.RoomID {
	e.t.Helper()
	resp, err := e.Admin.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{e.Bot},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		e.t.Fatalf("create DM with %s: %v", e.Bot, err)
	}
	e.Device.SyncUntil(Timeout, "the bridge bot in the DM", func() bool {
		return e.Device.Member(resp.RoomID, e.Bot, event.MembershipJoin)
	})
	return resp.RoomID
}

// Send sends an encrypted text message from the admin.
func (e *Env) Send(room id.RoomID, text string) id.EventID {
	e.t.Helper()
	return e.Device.Send(room, text)
}

// WaitMessage waits until the admin has decrypted a message in the room
// from the sender whose body contains text, and returns it.
func (e *Env) WaitMessage(room id.RoomID, sender id.UserID, text string) *event.Event {
	e.t.Helper()
	var found *event.Event
	e.Device.SyncUntil(Timeout, fmt.Sprintf("a message from %s containing %q", sender, text), func() bool {
		for _, evt := range e.Device.Decrypted() {
			msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
			if ok && evt.RoomID == room && evt.Sender == sender && strings.Contains(msg.Body, text) {
				found = evt
				return true
			}
		}
		return false
	})
	return found
}

// WaitPortal waits until the admin is invited to a room named name,
// joins it (and any other room it is invited to meanwhile) and returns it;
// the test fails unless the room is encrypted.
func (e *Env) WaitPortal(name string) id.RoomID {
	e.t.Helper()
	ctx := context.Background()
	var portal id.RoomID
	// A room's name may come after the invite (bridgev2 names a DM after
	// its ghost once the room exists), so every room joined here is read
	// again on each sync until one has the name.
	joined := map[id.RoomID]bool{}
	e.Device.SyncUntil(Timeout, "an invite to portal "+name, func() bool {
		for _, room := range e.Device.Invited() {
			if _, err := e.Admin.JoinRoomByID(ctx, room); err != nil {
				e.t.Fatalf("join invited room %s: %v", room, err)
			}
			joined[room] = true
		}
		for room := range joined {
			var content event.RoomNameEventContent
			if err := e.Admin.StateEvent(ctx, room, event.StateRoomName, "", &content); err == nil && content.Name == name {
				portal = room
			}
		}
		return portal != ""
	})
	var enc event.EncryptionEventContent
	if err := e.Admin.StateEvent(ctx, portal, event.StateEncryption, "", &enc); err != nil {
		e.t.Fatalf("portal %s is not encrypted: %v", portal, err)
	}
	e.Device.SyncUntil(Timeout, "the join to portal "+name, func() bool {
		return e.Device.Member(portal, e.Admin.UserID, event.MembershipJoin)
	})
	return portal
}

// LogBuffer keeps the bridge's log lines.
type LogBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns the lines so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// teeWriter writes to both.
type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (w teeWriter) Write(p []byte) (int, error) {
	w.b.Write(p)
	return w.a.Write(p)
}
