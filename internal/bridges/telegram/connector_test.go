package telegram

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/telegram/telegramfake"
)

// TestLoginNeedsApp: without the application's api_id and api_hash a login
// is refused with what to set and where to get it, before any connection.
func TestLoginNeedsApp(t *testing.T) {
	for _, config := range []Config{{}, {APIID: 1}, {APIHash: "hash"}, {APIID: -1, APIHash: "hash"}} {
		c := &Connector{Config: config}
		_, err := c.CreateLogin(context.Background(), nil, loginFlowPhone)
		if !errors.Is(err, errNoApp) || !strings.Contains(err.Error(), "my.telegram.org") {
			t.Errorf("CreateLogin with %+v: %v, want errNoApp", config, err)
		}
	}
	c := &Connector{Config: Config{APIID: 1, APIHash: "hash"}}
	if _, err := c.CreateLogin(context.Background(), nil, loginFlowPhone); err != nil {
		t.Errorf("CreateLogin with an app: %v", err)
	}
	if _, err := c.CreateLogin(context.Background(), nil, "qr"); err == nil {
		t.Error("CreateLogin accepted an unknown flow")
	}
}

// TestClientOptionsRefusesBadDC: a malformed data center address or key in
// the config is an error naming the setting, not a panic.
func TestClientOptionsRefusesBadDC(t *testing.T) {
	for _, tc := range []struct {
		config Config
		want   string
	}{
		{Config{DCAddress: "no-port"}, "network.dc_address"},
		{Config{DCAddress: "127.0.0.1:x"}, "network.dc_address port"},
		{Config{DCAddress: "127.0.0.1:443"}, "network.public_key"},
		{Config{DCAddress: "127.0.0.1:443", PublicKey: "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"}, "network.public_key"},
	} {
		c := &Connector{Config: tc.config}
		if _, err := c.clientOptions(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("clientOptions(%+v) = %v, want an error about %s", tc.config, err, tc.want)
		}
	}
}

// TestTelegramEventsHandledSynchronously: the connector turns off the
// portal event buffer, so the update handler returns only once an event is
// in Matrix, and a failed or merely queued event is an error that keeps gotd
// from saving the update's pts.
func TestTelegramEventsHandledSynchronously(t *testing.T) {
	br := &bridgev2.Bridge{Config: &bridgeconfig.BridgeConfig{PortalEventBuffer: 64}}
	NewConnector().Init(br)
	if br.Config.PortalEventBuffer != 0 {
		t.Errorf("PortalEventBuffer = %d after Init, want 0", br.Config.PortalEventBuffer)
	}
	sendFailed := errors.New("send failed")
	for _, tt := range []struct {
		res     bridgev2.EventHandlingResult
		wantErr bool
	}{
		{bridgev2.EventHandlingResultSuccess, false},
		{bridgev2.EventHandlingResultIgnored, false},
		{bridgev2.EventHandlingResultQueued, true},
		{bridgev2.EventHandlingResultFailed, true},
		{bridgev2.EventHandlingResultFailed.WithError(sendFailed), true},
	} {
		err := handled("message", tt.res)
		if (err != nil) != tt.wantErr {
			t.Errorf("handled(%+v) = %v, want error: %v", tt.res, err, tt.wantErr)
		}
		if tt.res.Error != nil && !errors.Is(err, tt.res.Error) {
			t.Errorf("handled(%+v) = %v, does not wrap %v", tt.res, err, tt.res.Error)
		}
	}
}

// TestRandomIDFromEventID: a Matrix event's Telegram random_id depends only
// on its event ID, so a redelivered event repeats it and Telegram drops it.
func TestRandomIDFromEventID(t *testing.T) {
	a, b := id.EventID("$a:example.org"), id.EventID("$b:example.org")
	if randomID(a) != randomID(a) {
		t.Error("randomID is not stable for one event")
	}
	if randomID(a) == randomID(b) {
		t.Error("two events share a randomID")
	}
}

// TestSentMessageShapes: the sent message is found in each shape of a send
// call's answer, by the request's random ID, not by the first outgoing one.
func TestSentMessageShapes(t *testing.T) {
	updates := []tg.UpdateClass{
		&tg.UpdateMessageID{ID: 6, RandomID: 1},
		&tg.UpdateMessageID{ID: 7, RandomID: 42},
		&tg.UpdateNewMessage{Message: &tg.Message{ID: 6, Out: true, Date: 100}},
		&tg.UpdateNewMessage{Message: &tg.Message{ID: 7, Out: true, Date: 200}},
	}
	for _, tt := range []struct {
		answer   tg.UpdatesClass
		wantID   int
		wantDate int
	}{
		{&tg.UpdateShortSentMessage{ID: 5, Date: 50}, 5, 50},
		{&tg.Updates{Updates: updates, Date: 1}, 7, 200},
		{&tg.UpdatesCombined{Updates: updates, Date: 1}, 7, 200},
	} {
		id, date, err := sentMessage(tt.answer, 42)
		if err != nil || id != tt.wantID || date != tt.wantDate {
			t.Errorf("sentMessage(%T) = %d, %d, %v; want %d, %d", tt.answer, id, date, err, tt.wantID, tt.wantDate)
		}
	}
	if _, _, err := sentMessage(&tg.Updates{Updates: updates[2:]}, 42); err == nil {
		t.Error("an answer without the request's UpdateMessageID was taken")
	}
}

// startLogin starts a phone login for user against the fake and sends the
// code, so that its client is connected.
func startLogin(t *testing.T, c *Connector, user *bridgev2.User) *phoneLogin {
	t.Helper()
	process, err := c.CreateLogin(context.Background(), user, loginFlowPhone)
	if err != nil {
		t.Fatal(err)
	}
	step, err := process.(*phoneLogin).SubmitUserInput(context.Background(), map[string]string{"phone": "+15550001"})
	if err != nil {
		t.Fatal(err)
	}
	if step.StepID != loginStepCode {
		t.Fatalf("after the phone number: step %s, want the code", step.StepID)
	}
	return process.(*phoneLogin)
}

// waitEnded waits until a login's client has stopped.
func waitEnded(t *testing.T, l *phoneLogin, why string) {
	t.Helper()
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	select {
	case <-ended:
	case <-time.After(45 * time.Second):
		t.Fatalf("the login's Telegram client still runs after %s", why)
	}
}

// TestAbandonedLoginsEnd: a login left waiting for its code disconnects
// after loginTimeout (and then says it expired), and a user's new login
// cancels their previous one but not another user's.
func TestAbandonedLoginsEnd(t *testing.T) {
	fake := telegramfake.New(t)
	fake.AddUser("+15550001", "Mia", "Example")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Connector{
		Bridge: &bridgev2.Bridge{BackgroundCtx: ctx},
		Config: Config{APIID: 1, APIHash: "test", DCAddress: fake.Addr, DCID: telegramfake.DC, PublicKey: fake.PublicKeyPEM()},
	}
	mia := &bridgev2.User{User: &database.User{MXID: "@mia:example.org"}}
	bob := &bridgev2.User{User: &database.User{MXID: "@bob:example.org"}}

	first := startLogin(t, c, mia)
	bobs := startLogin(t, c, bob)
	second := startLogin(t, c, mia)
	if !first.expired() {
		t.Fatal("the same user started another login, and the first one's Telegram client still runs")
	}
	if bobs.expired() || second.expired() {
		t.Fatal("a new login ended another user's login or itself")
	}
	if _, err := first.SubmitUserInput(ctx, map[string]string{"code": telegramfake.LoginCode}); !errors.Is(err, errLoginExpired) {
		t.Errorf("a code for the replaced login: %v, want errLoginExpired", err)
	}
	second.Cancel()
	bobs.Cancel()

	defer func(timeout time.Duration) { loginTimeout = timeout }(loginTimeout)
	// Long enough to connect to the fake on a loaded machine (5 s was not
	// under CI's load), short enough for the test.
	loginTimeout = 15 * time.Second
	abandoned := startLogin(t, c, mia)
	waitEnded(t, abandoned, "its timeout")
	if _, err := abandoned.SubmitUserInput(ctx, map[string]string{"code": telegramfake.LoginCode}); !errors.Is(err, errLoginExpired) {
		t.Errorf("a code after the timeout: %v, want errLoginExpired", err)
	}
}
