package accounts_test

import (
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestHasActiveAdmin: only an admin that is not deactivated counts.
func TestHasActiveAdmin(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := t.Context()
		want := func(step string, want bool) {
			t.Helper()
			got, err := n.Accounts.HasActiveAdmin(ctx)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if got != want {
				t.Fatalf("%s: HasActiveAdmin = %v, want %v", step, got, want)
			}
		}
		alice := n.Register("alice")
		want("no admin", false)
		if err := n.Accounts.SetAdmin(ctx, alice.UserID, true); err != nil {
			t.Fatal(err)
		}
		want("alice admin", true)
		if err := n.Accounts.Deactivate(ctx, alice.UserID, false); err != nil {
			t.Fatal(err)
		}
		want("alice deactivated", false)
	})
}
