package admin_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestCreateUsers: the bulk endpoint creates every account, each able to
// log in with its given or generated password, or refuses the whole list
// with the spec's error naming the bad account and creates none.
func TestCreateUsers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin := n.RegisterAdmin("admin")
		taken := n.Register("taken")
		const path = "/_matrixos/admin/v1/users"
		refusals := []struct {
			name    string
			body    map[string]any
			errcode string
		}{
			{"no users", map[string]any{"users": []any{}}, "M_INVALID_PARAM"},
			{"bad name", map[string]any{"users": []any{
				map[string]any{"username": "fine1", "password": "secret one"},
				map[string]any{"username": "No Spaces", "password": "secret two"},
			}}, "M_INVALID_USERNAME"},
			{"named twice", map[string]any{"users": []any{
				map[string]any{"username": "twice", "password": "secret one"},
				map[string]any{"username": "twice", "password": "secret two"},
			}}, "M_INVALID_PARAM"},
			{"taken", map[string]any{"users": []any{
				map[string]any{"username": "fine2", "password": "secret one"},
				map[string]any{"username": string(taken.UserID), "password": "secret two"},
			}}, "M_USER_IN_USE"},
			{"no password, none generated", map[string]any{"users": []any{
				map[string]any{"username": "fine3"},
			}}, "M_INVALID_PARAM"},
			{"other server", map[string]any{"users": []any{
				map[string]any{"username": "@x:elsewhere", "password": "secret"},
			}}, "M_INVALID_PARAM"},
			{"not JSON", nil, "M_NOT_JSON"},
		}
		for _, tt := range refusals {
			var body any = tt.body
			if tt.body == nil {
				body = []byte("{")
			}
			n.Do(t, "POST", path, admin.AccessToken, body).Want(t, http.StatusBadRequest, tt.errcode)
		}
		for _, lp := range []string{"fine1", "fine2", "fine3", "twice"} {
			if _, ok, err := n.Accounts.GetUser(t.Context(), id.NewUserID(lp, n.Config.ServerName)); err != nil || ok {
				t.Errorf("%s exists after a refused list (err %v)", lp, err)
			}
		}

		n.Do(t, "POST", path, admin.AccessToken, map[string]any{
			"generate_passwords": true,
			"users":              []any{map[string]any{"username": "fine4"}},
		}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

		list := map[string]any{"users": []any{
			map[string]any{"username": "carol", "password": "carol's password"},
			map[string]any{"username": "dave", "password": "dave's password", "admin": true},
			map[string]any{"username": "@erin:" + n.Config.ServerName, "password": "erin's password"},
		}}
		got := n.Do(t, "POST", path, admin.AccessToken, list).OK(t)
		users, _ := got["users"].([]any)
		if len(users) != 3 {
			t.Fatalf("answer %v, want three users", got)
		}
		for i, u := range users {
			m := u.(map[string]any)
			if _, ok := m["password"]; ok {
				t.Errorf("user %d: the answer holds a password: %v", i, m)
			}
			if m["admin"] != (i == 1) {
				t.Errorf("%v: admin %v", m["user_id"], m["admin"])
			}
		}
		// A retry of a list whose answer was lost says it was created.
		n.Do(t, "POST", path, admin.AccessToken, list).Want(t, http.StatusBadRequest, "M_USER_IN_USE")
		for _, lp := range []string{"carol", "dave", "erin"} {
			logIn(t, n, id.NewUserID(lp, n.Config.ServerName), lp+"'s password")
		}
		if u, ok, err := n.Accounts.GetUser(t.Context(), "@dave:"+id.UserID(n.Config.ServerName)); err != nil || !ok || !u.IsAdmin {
			t.Errorf("dave: %+v, %v, %v; want an admin", u, ok, err)
		}
	})
}

// TestCreateUsersClientGone: a bulk request whose client goes away before
// the answer leaves the accounts with the caller's passwords, or none
// (then its retry creates them): either way every account logs in.
func TestCreateUsersClientGone(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	body := `{"users": [{"username": "frank", "password": "frank's password"}, {"username": "gina", "password": "gina's password"}]}`
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /_matrixos/admin/v1/users HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", admin.AccessToken, len(body), body)
	conn.Close()
	// The retry waits for the request before it (one bulk call at a time).
	var retry *testnode.Response
	for retry == nil || retry.ErrCode() == "M_LIMIT_EXCEEDED" {
		if retry != nil {
			time.Sleep(10 * time.Millisecond)
		}
		retry = n.Do(t, "POST", "/_matrixos/admin/v1/users", admin.AccessToken, body)
	}
	if retry.Status != http.StatusOK {
		retry.Want(t, http.StatusBadRequest, "M_USER_IN_USE")
	}
	for _, lp := range []string{"frank", "gina"} {
		logIn(t, n, id.NewUserID(lp, n.Config.ServerName), lp+"'s password")
	}
}

func logIn(t *testing.T, n *testnode.Node, user id.UserID, password string) {
	t.Helper()
	_, err := n.Client().Login(context.Background(), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(user)},
		Password:   password,
	})
	if err != nil {
		t.Errorf("log in as %s: %v", user, err)
	}
}
