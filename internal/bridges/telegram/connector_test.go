package telegram

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/id"
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
