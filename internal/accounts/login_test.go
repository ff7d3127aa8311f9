package accounts_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestLoginFlows(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	flows, err := n.Client().GetLoginFlows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []mautrix.AuthType{mautrix.AuthTypePassword, mautrix.AuthTypeToken} {
		if !flows.HasFlow(want) {
			t.Errorf("login flows %+v lack %s", flows.Flows, want)
		}
	}
	wantOK(t, n.Do(t, "GET", loginPath, "", nil))
}

func TestPasswordLogin(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		lp := alice.UserID.Localpart()
		for _, ident := range []mautrix.UserIdentifier{
			{Type: mautrix.IdentifierTypeUser, User: string(alice.UserID)},
			{Type: mautrix.IdentifierTypeUser, User: lp},
		} {
			c := n.Client()
			res, err := c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, Identifier: ident, Password: testnode.Password, StoreCredentials: true})
			if err != nil {
				t.Fatalf("login as %q: %v", ident.User, err)
			}
			if res.UserID != alice.UserID || res.DeviceID == "" || res.AccessToken == "" {
				t.Fatalf("login response %+v", res)
			}
			if who, err := c.Whoami(ctx); err != nil || who.UserID != alice.UserID || who.DeviceID != res.DeviceID {
				t.Fatalf("whoami after login: %+v, %v", who, err)
			}
		}
		// The deprecated top-level "user" field, with the localpart in capitals.
		m := wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.password", "user": "ALICE1", "password": testnode.Password}))
		if m["user_id"] != string(alice.UserID) {
			t.Fatalf("legacy login: %v", m)
		}

		bad := []struct {
			name   string
			body   map[string]any
			status int
			code   string
		}{
			{"wrong password", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": lp}, "password": "wrong"}, 403, "M_FORBIDDEN"},
			{"no password", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": lp}}, 403, "M_FORBIDDEN"},
			{"unknown user", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "nobody"}, "password": "x"}, 403, "M_FORBIDDEN"},
			{"other server", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "@" + lp + ":elsewhere"}, "password": testnode.Password}, 403, "M_FORBIDDEN"},
			{"third-party id", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": "x"}, 403, "M_FORBIDDEN"},
			{"unknown identifier", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.what"}, "password": "x"}, 400, "M_UNKNOWN"},
			{"identifier not object", map[string]any{"type": "m.login.password", "identifier": "alice", "password": "x"}, 400, "M_BAD_JSON"},
			{"no identifier", map[string]any{"type": "m.login.password", "password": "x"}, 400, "M_MISSING_PARAM"},
			{"unknown type", map[string]any{"type": "m.login.carrier_pigeon"}, 400, "M_UNKNOWN"},
			{"no type", map[string]any{"password": "x"}, 400, "M_MISSING_PARAM"},
			{"wrong token", map[string]any{"type": "m.login.token", "token": "nope"}, 403, "M_FORBIDDEN"},
			{"type not string", map[string]any{"type": 7}, 400, "M_BAD_JSON"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				wantErr(t, n.Do(t, "POST", loginPath, "", tc.body), tc.status, tc.code)
			})
		}
		_, err := n.Client().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: lp}, Password: "wrong"})
		mxErr(t, err, "M_FORBIDDEN")

		// Logging in again with a device ID replaces that device's token.
		first := wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.password", "user": lp, "password": testnode.Password, "device_id": "MYDEVICE"}))
		second := wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.password", "user": lp, "password": testnode.Password, "device_id": "MYDEVICE"}))
		if first["device_id"] != "MYDEVICE" || second["device_id"] != "MYDEVICE" {
			t.Fatalf("device_id not kept: %v %v", first, second)
		}
		wantErr(t, n.Do(t, "GET", whoamiPath, first["access_token"].(string), nil), 401, "M_UNKNOWN_TOKEN")
		wantOK(t, n.Do(t, "GET", whoamiPath, second["access_token"].(string), nil))
	})
}

func TestTokenLogin(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		tok, err := n.Accounts.CreateLoginToken(ctx, alice.UserID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c := n.Client()
		res, err := c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: tok, StoreCredentials: true})
		if err != nil || res.UserID != alice.UserID {
			t.Fatalf("token login: %+v, %v", res, err)
		}
		if _, err := c.Whoami(ctx); err != nil {
			t.Fatal(err)
		}
		// Single use.
		_, err = n.Client().Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: tok})
		mxErr(t, err, "M_FORBIDDEN")
		// Expired.
		old, err := n.Accounts.CreateLoginToken(ctx, alice.UserID, -time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.token", "token": old}), 403, "M_FORBIDDEN")
	})
}

func TestRefreshTokens(t *testing.T) {
	const lifetime = 700 * time.Millisecond
	short := func(c *config.Config) { c.AccessTokenLifetime = lifetime }
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		m := wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{
			"type": "m.login.password", "user": alice.UserID.Localpart(), "password": testnode.Password, "refresh_token": true}))
		access, _ := m["access_token"].(string)
		refresh, _ := m["refresh_token"].(string)
		if refresh == "" || m["expires_in_ms"] != float64(lifetime.Milliseconds()) {
			t.Fatalf("login with refresh_token: %v", m)
		}
		wantOK(t, n.Do(t, "GET", whoamiPath, access, nil))

		// Refresh gives a new pair and retires the old refresh token.
		m = wantOK(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": refresh}))
		access2, _ := m["access_token"].(string)
		refresh2, _ := m["refresh_token"].(string)
		if access2 == "" || refresh2 == "" || access2 == access || refresh2 == refresh {
			t.Fatalf("refresh response %v", m)
		}
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": refresh}), 401, "M_UNKNOWN_TOKEN")
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{}), 400, "M_MISSING_PARAM")
		who := wantOK(t, n.Do(t, "GET", whoamiPath, access2, nil))
		if who["user_id"] != string(alice.UserID) {
			t.Fatalf("whoami with refreshed token: %v", who)
		}

		// Of two concurrent refreshes with one token, only one succeeds.
		m = wantOK(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": refresh2}))
		access2, refresh2 = m["access_token"].(string), m["refresh_token"].(string)
		statuses := make(chan int, 2)
		for range 2 {
			go func() {
				req, _ := http.NewRequest("POST", n.URL+"/_matrix/client/v3/refresh", strings.NewReader(`{"refresh_token":"`+refresh2+`"}`))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					statuses <- 0
					return
				}
				res.Body.Close()
				statuses <- res.StatusCode
			}()
		}
		if a, b := <-statuses, <-statuses; a+b != 200+401 {
			t.Fatalf("concurrent refreshes answered %d and %d, want one 200 and one 401", a, b)
		}
		m = wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{
			"type": "m.login.password", "user": alice.UserID.Localpart(), "password": testnode.Password, "refresh_token": true}))
		access2, refresh2 = m["access_token"].(string), m["refresh_token"].(string)

		// An expired access token is a soft logout.
		time.Sleep(lifetime + 200*time.Millisecond)
		e := wantErr(t, n.Do(t, "GET", whoamiPath, access2, nil), 401, "M_UNKNOWN_TOKEN")
		if e["soft_logout"] != true {
			t.Fatalf("expired token without soft_logout: %v", e)
		}
		m = wantOK(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": refresh2}))
		wantOK(t, n.Do(t, "GET", whoamiPath, m["access_token"].(string), nil))

		// Without refresh_token: no expiry and no refresh token.
		m = wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.password", "user": alice.UserID.Localpart(), "password": testnode.Password}))
		if _, ok := m["refresh_token"]; ok {
			t.Fatalf("refresh token without asking: %v", m)
		}
		if _, ok := m["expires_in_ms"]; ok {
			t.Fatalf("expiry without refresh token: %v", m)
		}
	}, short)

	// With no configured lifetime, a refreshed token does not expire and
	// expires_in_ms is left out.
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	m := wantOK(t, n.Do(t, "POST", loginPath, "", map[string]any{
		"type": "m.login.password", "user": alice.UserID.Localpart(), "password": testnode.Password, "refresh_token": true}))
	m = wantOK(t, n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": m["refresh_token"]}))
	if _, ok := m["expires_in_ms"]; ok {
		t.Fatalf("refresh without lifetime has expires_in_ms: %v", m)
	}
}

func TestLogout(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		second := n.Login(alice.UserID)
		if _, err := alice.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := alice.Whoami(ctx)
		mxErr(t, err, "M_UNKNOWN_TOKEN")
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/logout", alice.AccessToken, nil), 401, "M_UNKNOWN_TOKEN")
		// The device went with the token.
		devs, err := second.GetDevicesInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs.Devices) != 1 || devs.Devices[0].DeviceID != second.DeviceID {
			t.Fatalf("devices after logout: %+v", devs.Devices)
		}

		third := n.Login(alice.UserID)
		if _, err := second.LogoutAll(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*mautrix.Client{second, third} {
			_, err := c.Whoami(ctx)
			mxErr(t, err, "M_UNKNOWN_TOKEN")
		}
		// Logging in again still works.
		n.Login(alice.UserID)
	})
}

func TestWhoamiTokens(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	wantErr(t, n.Do(t, "GET", whoamiPath, "", nil), 401, "M_MISSING_TOKEN")
	wantErr(t, n.Do(t, "GET", whoamiPath, "mos_not-a-token", nil), 401, "M_UNKNOWN_TOKEN")
	m := wantOK(t, n.Do(t, "GET", whoamiPath+"?access_token="+alice.AccessToken, "", nil))
	if m["user_id"] != string(alice.UserID) || m["device_id"] != string(alice.DeviceID) || m["is_guest"] != false {
		t.Fatalf("whoami = %v", m)
	}
	// A header that is not a bearer token counts as missing.
	req, _ := http.NewRequest("GET", n.URL+whoamiPath, nil)
	req.Header.Set("Authorization", "Basic Zm9vOmJhcg==")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("basic auth header: %d", res.StatusCode)
	}
}
