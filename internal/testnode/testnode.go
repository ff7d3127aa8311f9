// Package testnode starts real Matrix OS nodes for tests: in-process, on a
// loopback port, on SQLite or on a throwaway PostgreSQL database, and hands
// out mautrix-go clients for registered users.
package testnode

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

// Engine selects the database a test node uses.
type Engine string

// The engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Engines lists both engines, for table-driven tests.
var Engines = []Engine{SQLite, Postgres}

// Node is a running test node.
type Node struct {
	*node.Node
	t       testing.TB
	Config  config.Config
	URL     string
	counter atomic.Int64
	stopped atomic.Bool
}

// Option changes a test node's config before start.
type Option func(*config.Config)

// Start runs a node on the engine with open registration; it is shut down
// when the test ends. For Postgres, the test is skipped when PostgreSQL is
// not installed (outside CI).
func Start(t testing.TB, engine Engine, opts ...Option) *Node {
	t.Helper()
	return StartConfig(t, testConfig(t, engine, opts...))
}

// testConfig is the config Start runs a node with.
func testConfig(t testing.TB, engine Engine, opts ...Option) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ServerName = "localhost"
	cfg.OpenRegistration = true
	cfg.LogLevel = "warn"
	cfg.RateLimit = false // tests that need it turn it back on
	cfg.Assistant = false // as is the assistant (WithAssistant)
	if engine == Postgres {
		cfg.Database = pgtest.Start(t)
	}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// WithAssistant runs the node's assistant, which test nodes leave off
// unless asked.
func WithAssistant(cfg *config.Config) { cfg.Assistant = true }

// StartConfig runs a node with exactly this config.
func StartConfig(t testing.TB, cfg config.Config) *Node {
	t.Helper()
	return startConfig(t, cfg, nil)
}

// startConfig runs a node with this config and, when not nil, this
// federation listener.
func startConfig(t testing.TB, cfg config.Config, fedListener net.Listener) *Node {
	t.Helper()
	var w io.Writer = io.Discard
	if os.Getenv("MATRIXOS_TEST_LOG") != "" {
		w = os.Stderr
	}
	log := node.NewLogger(cfg, w)
	n, err := node.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	n.FederationListener = fedListener
	if err := n.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &Node{Node: n, t: t, Config: cfg, URL: "http://" + n.Addr}
	t.Cleanup(func() { tn.Stop() })
	return tn
}

// Stop shuts the node down; calling it again does nothing.
func (n *Node) Stop() {
	if n.stopped.Swap(true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Shutdown(ctx)
}

// Restart stops the node and starts a new one on the same data and database.
func (n *Node) Restart() *Node {
	n.t.Helper()
	n.Stop()
	cfg := n.Config
	return StartConfig(n.t, cfg)
}

// Client returns an unauthenticated mautrix client for the node.
func (n *Node) Client() *mautrix.Client {
	n.t.Helper()
	c, err := mautrix.NewClient(n.URL, "", "")
	if err != nil {
		n.t.Fatalf("new client: %v", err)
	}
	c.Client = &http.Client{Timeout: 2 * time.Minute}
	c.Log = zerologDiscard()
	return c
}

// Password is the password of every user Register creates.
const Password = "correct horse battery staple"

// Register creates a user (with a unique name built from prefix) and returns
// a logged-in client.
func (n *Node) Register(prefix string) *mautrix.Client {
	n.t.Helper()
	c := n.Client()
	name := fmt.Sprintf("%s%d", prefix, n.counter.Add(1))
	resp, err := c.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: name, Password: Password})
	if err != nil {
		n.t.Fatalf("register %s: %v", name, err)
	}
	c.SetCredentials(resp.UserID, resp.AccessToken)
	c.DeviceID = resp.DeviceID
	return c
}

// Login logs an existing user in with a new device.
func (n *Node) Login(user id.UserID) *mautrix.Client {
	n.t.Helper()
	c := n.Client()
	_, err := c.Login(context.Background(), &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(user)},
		Password:         Password,
		StoreCredentials: true,
	})
	if err != nil {
		n.t.Fatalf("login %s: %v", user, err)
	}
	return c
}
