package accountdata_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// eachEngine runs f against a node on SQLite and one on PostgreSQL.
func eachEngine(t *testing.T, f func(t *testing.T, n *testnode.Node)) {
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) {
			f(t, testnode.Start(t, e))
		})
	}
}

// errcode returns the Matrix errcode and HTTP status of a mautrix error.
func errcode(err error) (string, int) {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		status := 0
		if he.Response != nil {
			status = he.Response.StatusCode
		}
		return he.RespError.ErrCode, status
	}
	return "", 0
}

func wantErr(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	got, st := errcode(err)
	if got != code || (status != 0 && st != status) {
		t.Errorf("%s: got %s (HTTP %d, %v), want %s (HTTP %d)", what, got, st, err, code, status)
	}
}

// raw sends a request with a raw body and returns the status and body;
// the body is checked against the spec.
func raw(t *testing.T, spec *spectest.Spec, c *mautrix.Client, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, c.HomeserverURL.String()+"/_matrix/client/v3"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := spec.ValidateResponse(method, "/_matrix/client/v3"+path, resp.StatusCode, b); err != nil {
		t.Errorf("%s %s: response not per spec: %v", method, path, err)
	}
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func syncOnce(t *testing.T, c *mautrix.Client, since string, timeout int) *mautrix.RespSync {
	t.Helper()
	s, err := c.SyncRequest(context.Background(), timeout, since, "", false, "")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return s
}

// findEvent returns the content of the last event of the type in the list.
func findEvent(evs []*event.Event, typ string) map[string]any {
	var out map[string]any
	for _, ev := range evs {
		if ev.Type.Type == typ {
			out = ev.Content.Raw
			if out == nil {
				json.Unmarshal(ev.Content.VeryRaw, &out)
			}
		}
	}
	return out
}

func countEvents(evs []*event.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type.Type == typ {
			n++
		}
	}
	return n
}

func roomAccountData(s *mautrix.RespSync, roomID id.RoomID) []*event.Event {
	if jr := s.Rooms.Join[roomID]; jr != nil {
		return jr.AccountData.Events
	}
	return nil
}
