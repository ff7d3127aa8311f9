package accounts_test

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// wantErr fails unless r is an error with this status and errcode, and
// returns its body.
func wantErr(t *testing.T, r *testnode.Response, status int, errcode string) map[string]any {
	t.Helper()
	return r.Want(t, status, errcode).JSON(t)
}

// wantOK fails unless r is a 200 and returns its body.
func wantOK(t *testing.T, r *testnode.Response) map[string]any {
	t.Helper()
	return r.OK(t)
}

// mxErr fails unless err is a Matrix error with this errcode.
func mxErr(t *testing.T, err error, errcode string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != errcode {
		t.Fatalf("got error %v, want %s", err, errcode)
	}
}

// passwordAuth is a UIA m.login.password auth dict.
func passwordAuth(user, password, session string) map[string]any {
	a := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   password,
	}
	if session != "" {
		a["session"] = session
	}
	return a
}
