package appservice_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/testnode"
)

// registrationYAML is a registration file for the test appservice named name:
// as_token "as-NAME", sender "NAMEbot", exclusive users @NAME_.+ and
// aliases #NAME_.+, extra appended as is.
func registrationYAML(name, url, extra string) string {
	urlLine := "url: null"
	if url != "" {
		urlLine = "url: " + url
	}
	return fmt.Sprintf(`id: %[1]s
%[2]s
as_token: as-%[1]s
hs_token: hs-%[1]s
sender_localpart: %[1]sbot
rate_limited: false
protocols: [%[1]s]
namespaces:
  users:
  - exclusive: true
    regex: '@%[1]s_.+:localhost'
  aliases:
  - exclusive: true
    regex: '#%[1]s_.+:localhost'
%[3]s`, name, urlLine, extra)
}

// writeRegistration puts a registration file into the node's appservices
// directory.
func writeRegistration(t testing.TB, dataDir, file, content string) {
	t.Helper()
	dir := appservice.Dir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withRegistration starts a node with a registration file in place.
func withRegistration(file, content string) testnode.Option {
	return func(cfg *config.Config) {
		dir := appservice.Dir(cfg.DataDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			panic(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
			panic(err)
		}
	}
}

// asClient is a mautrix client with the appservice's as_token acting as
// user (identity assertion) when user is not empty.
func asClient(t testing.TB, n *testnode.Node, asToken string, user id.UserID) *mautrix.Client {
	t.Helper()
	c := n.Client()
	c.AccessToken = asToken
	if user != "" {
		c.UserID = user
		c.SetAppServiceUserID = true
	}
	return c
}

// registerGhost registers user for the appservice, as mautrix bridges do.
func registerGhost(t testing.TB, c *mautrix.Client, localpart string) {
	t.Helper()
	_, _, err := c.Register(t.Context(), &mautrix.ReqRegister[any]{
		Username: localpart, Type: mautrix.AuthTypeAppservice, InhibitLogin: true,
	})
	if err != nil {
		t.Fatalf("register %s: %v", localpart, err)
	}
}

func whoami(t testing.TB, c *mautrix.Client) (*mautrix.RespWhoami, error) {
	t.Helper()
	return c.Whoami(t.Context())
}

func TestRegistrationLoadAndReload(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite,
		withRegistration("bridge.yaml", registrationYAML("bridge", "", "")),
		withRegistration("broken.yaml", "id: [oops\n"),
		withRegistration("dup.yaml", registrationYAML("bridge", "", "")))
	resp, err := whoami(t, asClient(t, n, "as-bridge", ""))
	if err != nil {
		t.Fatalf("whoami with the as_token: %v", err)
	}
	if resp.UserID != "@bridgebot:localhost" {
		t.Errorf("whoami = %s, want the sender", resp.UserID)
	}

	// A new file is not in use before a reload.
	writeRegistration(t, n.Config.DataDir, "second.yml", registrationYAML("second", "", ""))
	_, err = whoami(t, asClient(t, n, "as-second", ""))
	testnode.WantErr(t, err, "M_UNKNOWN_TOKEN", http.StatusUnauthorized)

	// SIGHUP's reload: the new file loads, the refused ones are named.
	err = n.ReloadAppservices(t.Context())
	if err == nil {
		t.Fatal("reload reports no refused file")
	}
	for _, want := range []string{"broken.yaml", "dup.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error %q does not name %s", err, want)
		}
	}
	if resp, err := whoami(t, asClient(t, n, "as-second", "")); err != nil || resp.UserID != "@secondbot:localhost" {
		t.Fatalf("whoami with the new as_token: %v %v", resp, err)
	}

	// `matrixos appservice reload` records a change the running node
	// applies: a removed file's token stops working.
	if err := os.Remove(filepath.Join(appservice.Dir(n.Config.DataDir), "second.yml")); err != nil {
		t.Fatal(err)
	}
	cli, err := node.OpenDB(t.Context(), n.Config, node.NewLogger(n.Config, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := appservice.RecordReload(t.Context(), cli); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := whoami(t, asClient(t, n, "as-second", ""))
		if code, _ := testnode.ErrCode(err); code == "M_UNKNOWN_TOKEN" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not apply the CLI's reload: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := whoami(t, asClient(t, n, "as-bridge", "")); err != nil {
		t.Fatalf("the remaining appservice after the reload: %v", err)
	}
}

func TestIdentityAssertion(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ghost := id.UserID("@bridge_alice:localhost")
		bot := asClient(t, n, "as-bridge", "")

		// A namespace user who is not registered yet cannot be acted as.
		_, err := whoami(t, asClient(t, n, "as-bridge", ghost))
		testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)

		registerGhost(t, bot, "bridge_alice")
		resp, err := whoami(t, asClient(t, n, "as-bridge", ghost))
		if err != nil || resp.UserID != ghost {
			t.Fatalf("whoami as the ghost: %v %v", resp, err)
		}

		// Users outside the namespace, of this server or another, cannot.
		alice := n.Register("alice")
		for _, other := range []id.UserID{alice.UserID, "@bridge_x:elsewhere.example"} {
			_, err = whoami(t, asClient(t, n, "as-bridge", other))
			testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)
		}

		// The ghost acts in rooms as itself.
		ghostClient := asClient(t, n, "as-bridge", ghost)
		room, err := ghostClient.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatalf("ghost creates a room: %v", err)
		}
		if _, err := alice.JoinRoomByID(t.Context(), room.RoomID); err != nil {
			t.Fatal(err)
		}
		sent, err := ghostClient.SendText(t.Context(), room.RoomID, "from the bridge")
		if err != nil {
			t.Fatal(err)
		}
		ev, err := alice.GetEvent(t.Context(), room.RoomID, sent.EventID)
		if err != nil || ev.Sender != ghost {
			t.Fatalf("event %v sent by %v, want the ghost", ev, err)
		}

		// device_id names one of the user's devices.
		withDevice := asClient(t, n, "as-bridge", ghost)
		withDevice.DeviceID = "NOSUCHDEVICE"
		withDevice.SetAppServiceDeviceID = true
		_, err = whoami(t, withDevice)
		testnode.WantErr(t, err, "M_UNKNOWN_DEVICE", http.StatusBadRequest)
	}, withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
}

func TestAppserviceRegisterAndLogin(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(cfg *config.Config) { cfg.OpenRegistration = false },
		withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
	bot := asClient(t, n, "as-bridge", "")

	// Registration needs the as_token and a namespace user, even with
	// registration closed to everyone else.
	_, _, err := n.Client().Register(t.Context(), &mautrix.ReqRegister[any]{Username: "bridge_bob", Type: mautrix.AuthTypeAppservice})
	testnode.WantErr(t, err, "M_MISSING_TOKEN", http.StatusUnauthorized)
	_, _, err = bot.Register(t.Context(), &mautrix.ReqRegister[any]{Username: "notbridge", Type: mautrix.AuthTypeAppservice})
	testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
	reg, _, err := bot.Register(t.Context(), &mautrix.ReqRegister[any]{Username: "bridge_bob", Type: mautrix.AuthTypeAppservice})
	if err != nil {
		t.Fatalf("appservice registration: %v", err)
	}
	if reg.UserID != "@bridge_bob:localhost" || reg.AccessToken == "" {
		t.Fatalf("registration answer %+v", reg)
	}
	_, _, err = bot.Register(t.Context(), &mautrix.ReqRegister[any]{Username: "bridge_bob", Type: mautrix.AuthTypeAppservice})
	testnode.WantErr(t, err, "M_USER_IN_USE", http.StatusBadRequest)

	// m.login.application_service logs a namespace user in.
	login, err := bot.Login(t.Context(), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypeAppservice,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "bridge_bob"},
	})
	if err != nil {
		t.Fatalf("appservice login: %v", err)
	}
	c := n.Client()
	c.SetCredentials(login.UserID, login.AccessToken)
	if resp, err := whoami(t, c); err != nil || resp.UserID != "@bridge_bob:localhost" || resp.DeviceID != login.DeviceID {
		t.Fatalf("whoami with the login's token: %v %v", resp, err)
	}
	// ... but not one outside it, nor without the as_token.
	_, err = bot.Login(t.Context(), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypeAppservice,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "someone"},
	})
	testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
	_, err = n.Client().Login(t.Context(), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypeAppservice,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "bridge_bob"},
	})
	testnode.WantErr(t, err, "M_MISSING_TOKEN", http.StatusUnauthorized)
}

func TestExclusiveNamespaces(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, withRegistration("bridge.yaml", registrationYAML("bridge", "", "")))
	c := n.Client()
	for _, name := range []string{"bridge_carol", "bridgebot"} {
		_, err := c.RegisterAvailable(t.Context(), name)
		testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
		_, err = c.RegisterDummy(t.Context(), &mautrix.ReqRegister[any]{Username: name, Password: testnode.Password})
		testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
	}
	if _, err := c.RegisterAvailable(t.Context(), "carol"); err != nil {
		t.Fatalf("a name outside the namespaces: %v", err)
	}
}

// TestAppserviceRateLimit: appservices are exempt from rate limits unless
// their registration says rate_limited: true.
func TestAppserviceRateLimit(t *testing.T) {
	limited := registrationYAML("limited", "", "")
	limited = strings.Replace(limited, "rate_limited: false", "rate_limited: true", 1)
	n := testnode.Start(t, testnode.SQLite, func(cfg *config.Config) {
		cfg.RateLimit, cfg.RateLimitSendBurst, cfg.RateLimitSendPerMin = true, 5, 10
	},
		withRegistration("free.yaml", registrationYAML("free", "", "")),
		withRegistration("limited.yaml", limited))
	count429 := func(c *mautrix.Client) int {
		room, err := c.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		limitedN := 0
		for i := range 40 {
			_, err := c.SendText(context.Background(), room.RoomID, fmt.Sprint(i))
			if code, _ := testnode.ErrCode(err); code == "M_LIMIT_EXCEEDED" {
				limitedN++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		return limitedN
	}
	if got := count429(asClient(t, n, "as-free", "")); got != 0 {
		t.Errorf("an appservice with rate_limited: false was limited %d times", got)
	}
	if got := count429(asClient(t, n, "as-limited", "")); got == 0 {
		t.Error("an appservice with rate_limited: true was never limited")
	}
}

// TestIdentityAssertionRespectsExclusiveOwner: an appservice whose
// non-exclusive namespace covers another appservice's exclusive ghosts
// cannot act as them, and no appservice acts as a locked user.
func TestIdentityAssertionRespectsExclusiveOwner(t *testing.T) {
	wide := `id: wide
url: null
as_token: as-wide
hs_token: hs-wide
sender_localpart: widebot
namespaces:
  users:
  - exclusive: false
    regex: '@.*:localhost'
`
	n := testnode.Start(t, testnode.SQLite,
		withRegistration("bridge.yaml", registrationYAML("bridge", "", "")),
		withRegistration("wide.yaml", wide))
	ghost := id.UserID("@bridge_alice:localhost")
	registerGhost(t, asClient(t, n, "as-bridge", ""), "bridge_alice")
	if resp, err := whoami(t, asClient(t, n, "as-bridge", ghost)); err != nil || resp.UserID != ghost {
		t.Fatalf("the owner acts as its ghost: %v %v", resp, err)
	}
	_, err := whoami(t, asClient(t, n, "as-wide", ghost))
	testnode.WantErr(t, err, "M_FORBIDDEN", http.StatusForbidden)

	alice := n.Register("alice")
	if resp, err := whoami(t, asClient(t, n, "as-wide", alice.UserID)); err != nil || resp.UserID != alice.UserID {
		t.Fatalf("the wide appservice acts as alice: %v %v", resp, err)
	}
	if err := n.Accounts.SetLocked(t.Context(), alice.UserID, true); err != nil {
		t.Fatal(err)
	}
	_, err = whoami(t, asClient(t, n, "as-wide", alice.UserID))
	testnode.WantErr(t, err, "M_USER_LOCKED", http.StatusUnauthorized)
}

// TestSenderLocalparts: a sender_localpart with capitals, as mautrix
// bridges generate (32 random letters of both cases), loads and its
// as_token acts as that sender; a registration whose sender cannot be
// registered (too long a user ID) is refused alone, named in the reload's
// error, and does not keep the other files from loading.
func TestSenderLocalparts(t *testing.T) {
	const mixed = "nSMh4pNEXXGkX8glfFJTaQURIIRuF2Zh"
	n := testnode.Start(t, testnode.SQLite,
		withRegistration("bridge.yaml", registrationYAML("bridge", "", "")),
		withRegistration("mautrix.yaml", strings.Replace(registrationYAML("mautrix", "", ""), "sender_localpart: mautrixbot", "sender_localpart: "+mixed, 1)),
		withRegistration("long.yaml", strings.Replace(registrationYAML("long", "", ""), "sender_localpart: longbot", "sender_localpart: "+strings.Repeat("x", 250), 1)))
	resp, err := whoami(t, asClient(t, n, "as-mautrix", ""))
	if err != nil {
		t.Fatalf("whoami with the as_token of a sender with capitals: %v", err)
	}
	if want := id.UserID("@" + mixed + ":localhost"); resp.UserID != want {
		t.Errorf("whoami = %s, want %s", resp.UserID, want)
	}
	if _, err := whoami(t, asClient(t, n, "as-bridge", "")); err != nil {
		t.Errorf("whoami of another appservice: %v", err)
	}
	_, err = whoami(t, asClient(t, n, "as-long", ""))
	testnode.WantErr(t, err, "M_UNKNOWN_TOKEN", http.StatusUnauthorized)
	err = n.ReloadAppservices(t.Context())
	if err == nil || !strings.Contains(err.Error(), "appservice long") {
		t.Errorf("reload error %v does not name the refused appservice", err)
	}
	if _, err := whoami(t, asClient(t, n, "as-mautrix", "")); err != nil {
		t.Errorf("whoami after the reload: %v", err)
	}
}

// TestSenderTakesNoHumanAccount: a registration whose sender is an
// account a person registered is refused on reload, named in the error,
// and its as_token does not act as that person.
func TestSenderTakesNoHumanAccount(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	human := n.Client()
	resp, err := human.RegisterDummy(t.Context(), &mautrix.ReqRegister[any]{Username: "takerbot", Password: testnode.Password})
	if err != nil {
		t.Fatal(err)
	}
	writeRegistration(t, n.Config.DataDir, "taker.yaml", registrationYAML("taker", "", ""))
	err = n.ReloadAppservices(t.Context())
	if err == nil || !strings.Contains(err.Error(), string(resp.UserID)) {
		t.Errorf("reload error %v does not name the human sender", err)
	}
	_, err = whoami(t, asClient(t, n, "as-taker", ""))
	testnode.WantErr(t, err, "M_UNKNOWN_TOKEN", http.StatusUnauthorized)
}
