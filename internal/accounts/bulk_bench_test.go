package accounts_test

import (
	"strconv"
	"testing"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/cputime"
	"github.com/matrixos/matrixos/internal/testnode"
)

// BenchmarkCreateUsers creates b.N accounts with passwords one by one
// (CreateUser: what "user add" and the admin API's PUT do) and in one
// CreateUsers call, reporting wall and CPU time per account.
func BenchmarkCreateUsers(b *testing.B) {
	b.Run("one-by-one", func(b *testing.B) {
		n := testnode.Start(b, testnode.SQLite)
		cpu := cputime.Start()
		for i := range b.N {
			if _, err := n.Accounts.CreateUser(b.Context(), "one"+strconv.Itoa(i), "a password", false); err != nil {
				b.Fatal(err)
			}
		}
		cpu.Report(b, b.N)
	})
	b.Run("bulk", func(b *testing.B) {
		n := testnode.Start(b, testnode.SQLite)
		news := make([]accounts.NewAccount, b.N)
		for i := range news {
			news[i] = accounts.NewAccount{Localpart: "bulk" + strconv.Itoa(i), Password: "a password"}
		}
		cpu := cputime.Start()
		b.ResetTimer()
		if _, err := n.Accounts.CreateUsers(b.Context(), news, false); err != nil {
			b.Fatal(err)
		}
		cpu.Report(b, b.N)
	})
}
