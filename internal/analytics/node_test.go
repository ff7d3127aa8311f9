package analytics_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/analytics"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

func sendText(t *testing.T, c *mautrix.Client, room id.RoomID, body string) {
	t.Helper()
	if _, err := c.SendText(t.Context(), room, body); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func report(t *testing.T, n *testnode.Node, token, path string) analytics.Report {
	t.Helper()
	resp := n.Do(t, "GET", path, token, nil, testnode.NoSpecCheck())
	if resp.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.Status, resp.Body)
	}
	var rep analytics.Report
	if err := json.Unmarshal(resp.Body, &rep); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return rep
}

func TestRoomReport(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		bob := n.Register("bob")
		resp, err := admin.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		room := resp.RoomID
		if _, err := bob.JoinRoomByID(t.Context(), room); err != nil {
			t.Fatal(err)
		}
		sendText(t, admin, room, "hello")
		sendText(t, admin, room, "anyone?")
		sendText(t, bob, room, "yes")
		// Encrypted messages count from their metadata alone.
		if _, err := bob.SendMessageEvent(t.Context(), room, event.EventEncrypted, map[string]any{
			"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "sender_key": "k", "device_id": "D", "session_id": "s",
		}); err != nil {
			t.Fatal(err)
		}
		sendText(t, admin, room, "good")
		if err := n.Analytics.CatchUp(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Counted once however often the follower runs.
		if err := n.Analytics.CatchUp(t.Context()); err != nil {
			t.Fatal(err)
		}

		path := "/_matrixos/admin/v1/analytics/rooms/" + string(room) + "?days=2"
		rep := report(t, n, admin.AccessToken, path)
		now := time.Now().UTC()
		if rep.Messages != 5 || rep.Hours[len(rep.Hours)-1] != 5 || len(rep.Hours) != 48 {
			t.Fatalf("messages %d, hours %v; want 5 in the last of 48 hours", rep.Messages, rep.Hours)
		}
		if rep.ActiveMembers != 2 || rep.Top[0].UserID != admin.UserID || rep.Top[0].Messages != 3 {
			t.Fatalf("members %d, top %v", rep.ActiveMembers, rep.Top)
		}
		if rep.Replies != 2 || rep.MedianReplySeconds == nil {
			t.Fatalf("replies %d, median %v; want bob's answer and the admin's", rep.Replies, rep.MedianReplySeconds)
		}
		if b := rep.Busiest; b == nil || b.Messages != 5 || b.Hour != now.Hour() && b.Hour != (now.Hour()+23)%24 {
			t.Fatalf("busiest %+v at %v", b, now)
		}
		// An hour of history is too little for any forecast.
		if rep.Forecast.Model != analytics.ModelNone || len(rep.Forecast.Hours) != 0 || rep.Forecast.HistoryHours < 1 {
			t.Fatalf("forecast %+v from an hour of history", rep.Forecast)
		}

		// The node's figures include the room.
		if node := report(t, n, admin.AccessToken, "/_matrixos/admin/v1/analytics"); node.Messages < 5 || node.ActiveMembers < 2 {
			t.Fatalf("node messages %d, members %d", node.Messages, node.ActiveMembers)
		}

		chart := n.Do(t, "GET", "/_matrixos/admin/v1/analytics/rooms/"+string(room)+"/chart.png", admin.AccessToken, nil, testnode.NoSpecCheck())
		if chart.Status != http.StatusOK || chart.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("chart: %d %s", chart.Status, chart.Header.Get("Content-Type"))
		}
		if _, err := png.Decode(bytes.NewReader(chart.Body)); err != nil {
			t.Fatalf("chart does not decode: %v", err)
		}

		metrics := n.Do(t, "GET", "/metrics", "", nil, testnode.NoSpecCheck())
		if !strings.Contains(string(metrics.Body), "\nmatrixos_analytics_messages_7d 5\n") {
			t.Fatalf("metrics lack the 7-day messages gauge:\n%s", grepLines(string(metrics.Body), "matrixos_analytics"))
		}
		if strings.Contains(string(metrics.Body), "\nmatrixos_analytics_forecast_next_hour_messages ") {
			t.Fatalf("a forecast gauge from an hour of history:\n%s", grepLines(string(metrics.Body), "matrixos_analytics"))
		}

		for _, tc := range []struct {
			name, token, path, errcode string
			status                     int
		}{
			{"not an admin", bob.AccessToken, path, "M_FORBIDDEN", http.StatusForbidden},
			{"unknown room", admin.AccessToken, "/_matrixos/admin/v1/analytics/rooms/!nope:" + n.Config.ServerName, "M_NOT_FOUND", http.StatusNotFound},
			{"bad room ID", admin.AccessToken, "/_matrixos/admin/v1/analytics/rooms/nope", "M_INVALID_PARAM", http.StatusBadRequest},
			{"days zero", admin.AccessToken, "/_matrixos/admin/v1/analytics?days=0", "M_INVALID_PARAM", http.StatusBadRequest},
			{"days too many", admin.AccessToken, "/_matrixos/admin/v1/analytics?days=91", "M_INVALID_PARAM", http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n.Do(t, "GET", tc.path, tc.token, nil, testnode.NoSpecCheck()).Want(t, tc.status, tc.errcode)
			})
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
