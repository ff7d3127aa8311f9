package accounts_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestCreateUsersOneAtATime: while a bulk creation runs, a second one is
// refused with 429 M_LIMIT_EXCEEDED and creates nothing; once the first
// ends, the same call succeeds.
func TestCreateUsersOneAtATime(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite)
	news := []accounts.NewAccount{{Localpart: "bulk1", Password: "secret one"}}
	release := accounts.HoldBulkSlot(n.Accounts)
	_, err := n.Accounts.CreateUsers(ctx, news, false)
	release()
	e, ok := mxhttp.AsError(err)
	if !ok || e.Status != http.StatusTooManyRequests || e.Code != "M_LIMIT_EXCEEDED" {
		t.Fatalf("a second bulk call: %v, want 429 M_LIMIT_EXCEEDED", err)
	}
	created, err := n.Accounts.CreateUsers(ctx, news, false)
	if err != nil || len(created) != 1 {
		t.Fatalf("after the first ends: %v, %d created; want 1", err, len(created))
	}
}
