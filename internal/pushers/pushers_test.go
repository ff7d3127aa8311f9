package pushers_test

import (
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

const (
	setPath = "/_matrix/client/v3/pushers/set"
	getPath = "/_matrix/client/v3/pushers"
)

// httpPusher is a valid pusher body for POST /pushers/set.
func httpPusher(pushkey, url string) map[string]any {
	return map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
		"app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
		"data": map[string]any{"url": url, "custom": "kept"},
	}
}

type pusherList struct {
	Pushers []struct {
		PushKey           string         `json:"pushkey"`
		AppID             string         `json:"app_id"`
		Kind              string         `json:"kind"`
		DeviceDisplayName string         `json:"device_display_name"`
		Data              map[string]any `json:"data"`
	} `json:"pushers"`
}

func pushkeys(t *testing.T, n *testnode.Node, token string) []string {
	t.Helper()
	body := n.Do(t, "GET", getPath, token, nil).Want(t, 200, "").Body
	var out []string
	for _, p := range testnode.Decode[pusherList](t, body).Pushers {
		out = append(out, p.PushKey)
	}
	return out
}

func TestSetAndGetPushers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		const gw = "https://push.example.org/_matrix/push/v1/notify"
		if got := pushkeys(t, n, alice.AccessToken); len(got) != 0 {
			t.Fatalf("new user has pushers: %v", got)
		}
		bad := func(mut func(m map[string]any), status int, code string) {
			t.Helper()
			p := httpPusher("k", gw)
			mut(p)
			n.Do(t, "POST", setPath, alice.AccessToken, p).Want(t, status, code)
		}
		bad(func(m map[string]any) { delete(m, "kind") }, 400, "M_MISSING_PARAM")
		bad(func(m map[string]any) { delete(m, "pushkey") }, 400, "M_MISSING_PARAM")
		bad(func(m map[string]any) { delete(m, "lang"); delete(m, "data") }, 400, "M_MISSING_PARAM")
		bad(func(m map[string]any) { m["data"] = map[string]any{} }, 400, "M_MISSING_PARAM")
		bad(func(m map[string]any) { m["data"] = map[string]any{"url": "https://push.example.org/notify"} }, 400, "M_INVALID_PARAM")
		bad(func(m map[string]any) {
			m["data"] = map[string]any{"url": "ftp://push.example.org/_matrix/push/v1/notify"}
		}, 400, "M_INVALID_PARAM")
		bad(func(m map[string]any) { m["data"] = map[string]any{"url": gw, "format": "full"} }, 400, "M_INVALID_PARAM")
		bad(func(m map[string]any) { m["kind"] = "email" }, 400, "M_INVALID_PARAM")
		bad(func(m map[string]any) { m["kind"] = "carrier-pigeon" }, 400, "M_INVALID_PARAM")
		bad(func(m map[string]any) { m["app_id"] = strings.Repeat("a", 65) }, 400, "M_INVALID_PARAM")

		for _, k := range []string{"k1", "k2"} {
			n.Do(t, "POST", setPath, alice.AccessToken, httpPusher(k, gw)).OK(t)
		}
		// Setting again updates in place.
		p := httpPusher("k1", gw)
		p["device_display_name"] = "Tablet"
		n.Do(t, "POST", setPath, alice.AccessToken, p).OK(t)
		if got := pushkeys(t, n, alice.AccessToken); len(got) != 2 {
			t.Fatalf("pushkeys = %v", got)
		}
		body := n.Do(t, "GET", getPath, alice.AccessToken, nil).Body
		for _, p := range testnode.Decode[pusherList](t, body).Pushers {
			if p.Data["custom"] != "kept" || (p.PushKey == "k1") != (p.DeviceDisplayName == "Tablet") {
				t.Fatalf("pushers after updating k1: %s", body)
			}
		}

		// Without append, another user's pusher with the same app ID and
		// pushkey replaces Alice's; with append, both stay.
		n.Do(t, "POST", setPath, bob.AccessToken, httpPusher("k2", gw)).OK(t)
		if got := pushkeys(t, n, alice.AccessToken); len(got) != 1 || got[0] != "k1" {
			t.Fatalf("after bob took k2, alice has %v", got)
		}
		ap := httpPusher("k1", gw)
		ap["append"] = true
		n.Do(t, "POST", setPath, bob.AccessToken, ap).OK(t)
		if got := pushkeys(t, n, alice.AccessToken); len(got) != 1 {
			t.Fatalf("append removed alice's pusher: %v", got)
		}
		if got := pushkeys(t, n, bob.AccessToken); len(got) != 2 {
			t.Fatalf("bob's pushers: %v", got)
		}

		// kind null deletes.
		n.Do(t, "POST", setPath, alice.AccessToken, map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "k1"}).OK(t)
		if got := pushkeys(t, n, alice.AccessToken); len(got) != 0 {
			t.Fatalf("after delete: %v", got)
		}

		// Pushers survive a restart and go with their device.
		n = n.Restart()
		if got := pushkeys(t, n, bob.AccessToken); len(got) != 2 {
			t.Fatalf("after restart: %v", got)
		}
		n.Do(t, "POST", "/_matrix/client/v3/logout", bob.AccessToken, map[string]any{}).OK(t)
		bob2 := n.Login(bob.UserID)
		if got := pushkeys(t, n, bob2.AccessToken); len(got) != 0 {
			t.Fatalf("pushers of a logged-out device remain: %v", got)
		}
	})
}
