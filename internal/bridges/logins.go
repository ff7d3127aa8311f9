package bridges

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
)

// Logins completes a bridge's logins one at a time; a connector keeps one,
// and its zero value is ready.
//
// A login of an account that is logged in already replaces the login's
// client: bridgev2's User.NewLogin disconnects the old client and loads a
// new one into the same UserLogin. Were two logins of one account to
// complete at once, the second could disconnect the first's client before
// it connected; that client then connected anyway and stayed connected
// beside its replacement, bridging every event twice (and the goroutine
// that connected it read UserLogin.Client while NewLogin wrote it).
// Logins stores a login and connects its client under one lock, so a
// client is replaced only once it is connecting (or connected), and
// Disconnect stops it. Connect must return at once (the connectors run
// their connections in goroutines of their own, as bridgev2 also calls
// Connect of each login in turn at start): a Connect that blocked would
// hold up every other login of the bridge.
type Logins struct {
	mu sync.Mutex
}

// New stores a login as user.NewLogin does and connects its client.
// Connect recovers its own panics, as bridgev2 also calls it from a
// goroutine.
func (l *Logins) New(ctx context.Context, user *bridgev2.User, data *database.UserLogin, params *bridgev2.NewLoginParams) (*bridgev2.UserLogin, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	login, err := user.NewLogin(ctx, data, params)
	if err != nil {
		return nil, err
	}
	login.Client.Connect(login.Log.WithContext(user.Bridge.BackgroundCtx))
	return login, nil
}
