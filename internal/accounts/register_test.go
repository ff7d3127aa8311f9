package accounts_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

const (
	registerPath = "/_matrix/client/v3/register"
	whoamiPath   = "/_matrix/client/v3/account/whoami"
	loginPath    = "/_matrix/client/v3/login"
)

// flowsOf returns the stage lists of a UIA 401 response.
func flowsOf(t *testing.T, m map[string]any) [][]string {
	t.Helper()
	var out [][]string
	flows, _ := m["flows"].([]any)
	for _, f := range flows {
		var stages []string
		for _, s := range f.(map[string]any)["stages"].([]any) {
			stages = append(stages, s.(string))
		}
		out = append(out, stages)
	}
	return out
}

// uiaSession starts a UIA session for body on path and returns it.
func uiaSession(t *testing.T, n *testnode.Node, method, path, token string, body map[string]any) (string, map[string]any) {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	r := n.Do(t, method, path, token, body)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s %s without auth: got %d, want 401: %s", method, path, r.Status, r.Body)
	}
	m := r.JSON(t)
	sess, _ := m["session"].(string)
	if sess == "" {
		t.Fatalf("UIA response without session: %s", r.Body)
	}
	return sess, m
}

func TestRegisterDummy(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		// Through the client.
		c := n.Client()
		res, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "Alice", Password: "pw-alice"})
		if err != nil {
			t.Fatalf("register: %v", err)
		}
		if res.UserID != "@alice:localhost" || res.AccessToken == "" || res.DeviceID == "" {
			t.Fatalf("bad register response %+v", res)
		}
		c.SetCredentials(res.UserID, res.AccessToken)
		who, err := c.Whoami(ctx)
		if err != nil || who.UserID != res.UserID || who.DeviceID != res.DeviceID {
			t.Fatalf("whoami = %+v, %v", who, err)
		}

		// Raw, to see the UIA responses.
		body := map[string]any{"username": "bob", "password": "pw-bob", "initial_device_display_name": "phone"}
		sess, m := uiaSession(t, n, "POST", registerPath, "", body)
		if !slices.ContainsFunc(flowsOf(t, m), func(f []string) bool { return slices.Equal(f, []string{"m.login.dummy"}) }) {
			t.Fatalf("no dummy flow: %s", m)
		}
		body["auth"] = map[string]any{"type": "m.login.dummy", "session": sess}
		m = wantOK(t, n.Do(t, "POST", registerPath, "", body))
		if m["user_id"] != "@bob:localhost" || m["access_token"] == "" {
			t.Fatalf("bad register response %v", m)
		}
		tok := m["access_token"].(string)
		devs := wantOK(t, n.Do(t, "GET", "/_matrix/client/v3/devices", tok, nil))["devices"].([]any)
		if len(devs) != 1 || devs[0].(map[string]any)["display_name"] != "phone" {
			t.Fatalf("devices after register: %v", devs)
		}

		// inhibit_login gives no token.
		body = map[string]any{"username": "carol", "password": "pw", "inhibit_login": true, "auth": map[string]any{"type": "m.login.dummy"}}
		m = wantOK(t, n.Do(t, "POST", registerPath, "", body))
		if m["user_id"] != "@carol:localhost" || m["access_token"] != nil {
			t.Fatalf("inhibit_login response %v", m)
		}

		// A taken user ID, in any case.
		for _, name := range []string{"alice", "ALICE"} {
			_, err = c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: "x"})
			mxErr(t, err, "M_USER_IN_USE")
		}
		// Invalid user IDs.
		for _, name := range []string{"bad name", "émile", "a:b", "@x", strings.Repeat("a", 300)} {
			r := n.Do(t, "POST", registerPath, "", map[string]any{"username": name, "password": "x", "auth": map[string]any{"type": "m.login.dummy"}})
			wantErr(t, r, http.StatusBadRequest, "M_INVALID_USERNAME")
		}
		// Guests are not allowed.
		wantErr(t, n.Do(t, "POST", registerPath+"?kind=guest", "", map[string]any{}), http.StatusForbidden, "M_FORBIDDEN")
		// No username: the server picks one.
		m = wantOK(t, n.Do(t, "POST", registerPath, "", map[string]any{"password": "x", "auth": map[string]any{"type": "m.login.dummy"}}))
		if m["user_id"] == "" {
			t.Fatalf("no user_id: %v", m)
		}
	})
}

func TestRegisterAvailable(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		c := n.Client()
		if res, err := c.RegisterAvailable(ctx, "nobody"); err != nil || !res.Available {
			t.Fatalf("available(nobody) = %+v, %v", res, err)
		}
		_, err := c.RegisterAvailable(ctx, alice.UserID.Localpart())
		mxErr(t, err, "M_USER_IN_USE")
		_, err = c.RegisterAvailable(ctx, "not valid!")
		mxErr(t, err, "M_INVALID_USERNAME")
		wantErr(t, n.Do(t, "GET", registerPath+"/available", "", nil), http.StatusBadRequest, "M_MISSING_PARAM")
	})
}

func TestRegisterDisabled(t *testing.T) {
	off := func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, false }
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		_, err := n.Client().RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: "alice", Password: "x"})
		mxErr(t, err, "M_FORBIDDEN")
		wantErr(t, n.Do(t, "POST", registerPath, "", map[string]any{"username": "alice"}), http.StatusForbidden, "M_FORBIDDEN")
		wantErr(t, n.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc", "", nil), http.StatusForbidden, "M_FORBIDDEN")
	}, off)
}

func TestRegistrationToken(t *testing.T) {
	tokenOnly := func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, true }
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		two := int64(2)
		tok, err := n.Accounts.CreateRegistrationToken(ctx, accounts.RegistrationToken{Token: "let-me-in", UsesAllowed: &two})
		if err != nil {
			t.Fatal(err)
		}
		validity := func(token string) bool {
			t.Helper()
			m := wantOK(t, n.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token="+url.QueryEscape(token), "", nil))
			return m["valid"] == true
		}
		if !validity(tok.Token) || validity("wrong") {
			t.Fatal("validity endpoint disagrees with the token table")
		}
		wantErr(t, n.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity", "", nil), http.StatusBadRequest, "M_MISSING_PARAM")

		register := func(name, token string) *testnode.Response {
			t.Helper()
			body := map[string]any{"username": name, "password": testnode.Password}
			sess, m := uiaSession(t, n, "POST", registerPath, "", body)
			if got := flowsOf(t, m); !slices.EqualFunc(got, [][]string{{"m.login.registration_token"}}, slices.Equal) {
				t.Fatalf("flows = %v, want only the token stage", got)
			}
			// m.login.dummy does not satisfy the token flow.
			body["auth"] = map[string]any{"type": "m.login.dummy", "session": sess}
			if r := n.Do(t, "POST", registerPath, "", body); r.Status != http.StatusUnauthorized {
				t.Fatalf("dummy stage registered without a token: %d %s", r.Status, r.Body)
			}
			body["auth"] = map[string]any{"type": "m.login.registration_token", "token": token, "session": sess}
			return n.Do(t, "POST", registerPath, "", body)
		}
		// A wrong token fails the stage.
		r := register("mallory", "nope")
		if r.Status != http.StatusUnauthorized || r.JSON(t)["errcode"] == nil {
			t.Fatalf("wrong token: %d %s", r.Status, r.Body)
		}
		wantOK(t, register("alice", tok.Token))
		if !validity(tok.Token) {
			t.Fatal("token used once of two is no longer valid")
		}
		wantOK(t, register("bob", tok.Token))
		if validity(tok.Token) {
			t.Fatal("token used up is still valid")
		}
		r = register("carol", tok.Token)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("third use of a two-use token: %d %s", r.Status, r.Body)
		}
		// An expired token is not valid.
		past := int64(1000)
		exp, err := n.Accounts.CreateRegistrationToken(ctx, accounts.RegistrationToken{ExpiryTime: &past})
		if err != nil {
			t.Fatal(err)
		}
		if validity(exp.Token) {
			t.Fatal("expired token is valid")
		}
		// Logging in works for token-registered users.
		n.Login("@alice:localhost")
	}, tokenOnly)
}

func TestSharedSecretRegistration(t *testing.T) {
	const secret = "s3cr3t"
	withSecret := func(c *config.Config) { c.RegistrationSharedSecret = secret }
	const path = "/_synapse/admin/v1/register"
	mac := func(nonce, user, password string, admin bool) string {
		m := hmac.New(sha1.New, []byte(secret))
		m.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00"))
		if admin {
			m.Write([]byte("admin"))
		} else {
			m.Write([]byte("notadmin"))
		}
		return hex.EncodeToString(m.Sum(nil))
	}
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		nonce := func() string {
			t.Helper()
			return wantOK(t, n.Do(t, "GET", path, "", nil))["nonce"].(string)
		}
		nc := nonce()
		m := wantOK(t, n.Do(t, "POST", path, "", map[string]any{
			"nonce": nc, "username": "root", "password": "pw", "admin": true, "displayname": "Root", "mac": mac(nc, "root", "pw", true),
		}))
		if m["user_id"] != "@root:localhost" || m["access_token"] == "" {
			t.Fatalf("admin register response %v", m)
		}
		sess, err := n.Accounts.Authenticate(context.Background(), m["access_token"].(string))
		if err != nil || !sess.IsAdmin {
			t.Fatalf("registered admin: %+v, %v", sess, err)
		}
		// The nonce is single-use.
		r := n.Do(t, "POST", path, "", map[string]any{"nonce": nc, "username": "root2", "password": "pw", "mac": mac(nc, "root2", "pw", false)})
		if r.Status != http.StatusBadRequest {
			t.Fatalf("reused nonce: %d %s", r.Status, r.Body)
		}
		// A wrong MAC (here: signed as non-admin, sent as admin).
		nc = nonce()
		wantErr(t, n.Do(t, "POST", path, "", map[string]any{
			"nonce": nc, "username": "eve", "password": "pw", "admin": true, "mac": mac(nc, "eve", "pw", false),
		}), http.StatusForbidden, "M_FORBIDDEN")
		nc = nonce()
		wantErr(t, n.Do(t, "POST", path, "", map[string]any{"nonce": nc, "username": "eve", "password": "pw", "mac": "zz"}), http.StatusForbidden, "M_FORBIDDEN")
		// A normal user, who then logs in with the password.
		nc = nonce()
		wantOK(t, n.Do(t, "POST", path, "", map[string]any{"nonce": nc, "username": "plain", "password": testnode.Password, "mac": mac(nc, "plain", testnode.Password, false)}))
		n.Login("@plain:localhost")
		wantErr(t, n.Do(t, "POST", path, "", map[string]any{"username": "x"}), http.StatusBadRequest, "M_MISSING_PARAM")
	}, withSecret)
	// Disabled without a secret.
	n := testnode.Start(t, testnode.SQLite)
	if r := n.Do(t, "GET", path, "", nil); r.Status != http.StatusNotFound {
		t.Fatalf("nonce without a shared secret: %d %s", r.Status, r.Body)
	}
}
