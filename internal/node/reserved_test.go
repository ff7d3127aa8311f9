package node_test

import (
	"context"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/automation"
	"github.com/matrixos/matrixos/internal/contracts"
	"github.com/matrixos/matrixos/internal/moderation"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestNodeUsersReserved: nobody registers the localpart of one of the
// node's own users (the assistant, the moderation, automation and
// contracts users, the server notices user; whether or not they run
// yet), nor finds it available, while a name that only starts the same
// registers.
func TestNodeUsersReserved(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	c := n.Client()
	lps := []string{assistant.Localpart, moderation.BotLocalpart, automation.BotLocalpart, contracts.BotLocalpart,
		n.Config.ServerNoticesLocalpart}
	for _, lp := range lps {
		_, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: lp, Password: testnode.Password})
		testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
		_, err = c.RegisterAvailable(ctx, lp)
		testnode.WantErr(t, err, "M_EXCLUSIVE", http.StatusBadRequest)
		if _, err := n.Client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: lp + "-fan", Password: testnode.Password}); err != nil {
			t.Errorf("register %s-fan: %v", lp, err)
		}
	}
}
