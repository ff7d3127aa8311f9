package federation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// refuseOdd is a PDUReceiver that accepts PDUs with an event_id and
// refuses the rest.
type refuseOdd struct{}

func (refuseOdd) ReceivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error) {
	evID := pduEventID(raw)
	if evID == "" {
		return "", errors.New("no event ID")
	}
	return evID, nil
}

// FuzzTransaction: whatever the body of PUT /send, the handler answers
// 200 with a pdus object or a 4xx Matrix error; it never panics or
// answers 5xx.
func FuzzTransaction(f *testing.F) {
	for _, seed := range []string{
		`{"origin": "a.example", "origin_server_ts": 1, "pdus": [{"event_id": "$1", "room_id": "!r"}], "edus": [{"edu_type": "m.typing", "content": {}}]}`,
		`{"pdus": []}`,
		`{"pdus": [{}, {"room_id": 5}], "edus": [{"edu_type": 1}, {"edu_type": "x", "content": []}]}`,
		`{"pdus": null}`,
		`[]`, `"x"`, ``, `{`, `{"pdus": [1]}`, `{"origin": 5, "pdus": []}`,
	} {
		f.Add(seed)
	}
	s := &Service{log: slog.New(slog.NewTextHandler(io.Discard, nil)), edus: map[string]EDUHandler{}, pdus: refuseOdd{}}
	s.HandleEDU("m.typing", func(ctx context.Context, origin string, content json.RawMessage) error { return nil })
	n := 0
	f.Fuzz(func(t *testing.T, body string) {
		n++
		r := httptest.NewRequest(http.MethodPut, "/_matrix/federation/v1/send/t", strings.NewReader(body))
		r.SetPathValue("txnId", "t"+string(rune('a'+n%26))+strings.Repeat("x", n%7))
		r = r.WithContext(context.WithValue(r.Context(), originKey{}, "a.example"))
		w := httptest.NewRecorder()
		handleSend(s).ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%d for %q: %s", w.Code, body, w.Body)
		}
		var resp map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer to %q is not a JSON object: %s", body, w.Body)
		}
		if w.Code == 200 {
			if _, ok := resp["pdus"].(map[string]any); !ok {
				t.Fatalf("200 without pdus for %q: %s", body, w.Body)
			}
		} else if _, ok := resp["errcode"].(string); !ok || w.Code < 400 {
			t.Fatalf("%d without errcode for %q: %s", w.Code, body, w.Body)
		}
	})
}
