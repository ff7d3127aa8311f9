package admin_test

import (
	"context"
	"net/http"
	"testing"

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

		got := n.Do(t, "POST", path, admin.AccessToken, map[string]any{
			"generate_passwords": true,
			"users": []any{
				map[string]any{"username": "carol", "password": "carol's password"},
				map[string]any{"username": "dave", "admin": true},
				map[string]any{"username": "@erin:" + n.Config.ServerName},
			},
		}).OK(t)
		users, _ := got["users"].([]any)
		if len(users) != 3 {
			t.Fatalf("answer %v, want three users", got)
		}
		passwords := map[id.UserID]string{"@carol:" + id.UserID(n.Config.ServerName): "carol's password"}
		for i, u := range users {
			m := u.(map[string]any)
			uid := id.UserID(m["user_id"].(string))
			pw, generated := m["password"].(string)
			if (i == 0) == generated {
				t.Errorf("user %d (%s): password in the answer %q, want one only where it was generated", i, uid, pw)
			}
			if generated {
				if len(pw) < 20 {
					t.Errorf("%s: generated password %q too short", uid, pw)
				}
				passwords[uid] = pw
			}
			if m["admin"] != (i == 1) {
				t.Errorf("%s: admin %v", uid, m["admin"])
			}
		}
		for uid, pw := range passwords {
			_, err := n.Client().Login(context.Background(), &mautrix.ReqLogin{
				Type:       mautrix.AuthTypePassword,
				Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(uid)},
				Password:   pw,
			})
			if err != nil {
				t.Errorf("log in as %s: %v", uid, err)
			}
		}
		if u, ok, err := n.Accounts.GetUser(t.Context(), "@dave:"+id.UserID(n.Config.ServerName)); err != nil || !ok || !u.IsAdmin {
			t.Errorf("dave: %+v, %v, %v; want an admin", u, ok, err)
		}
	})
}
