//go:build goolm

package telegram

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gotd/td/telegram/updates"
	"github.com/gotd/td/tg"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/host"
)

// newStoredClient is a client whose login lives in a real bridge database.
func newStoredClient(t *testing.T) *Client {
	t.Helper()
	ctx := context.Background()
	raw, err := host.OpenDatabase(filepath.Join(t.TempDir(), "bridge.db"), "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	db := database.New("telegram", (&Connector{}).GetDBMetaTypes(), raw)
	if err := db.Upgrade(ctx); err != nil {
		t.Fatalf("upgrading the bridge database: %v", err)
	}
	if err := db.User.Insert(ctx, &database.User{MXID: id.UserID("@mia:example.org")}); err != nil {
		t.Fatalf("inserting the user: %v", err)
	}
	row := &database.UserLogin{ID: "1001", UserMXID: "@mia:example.org", Metadata: &UserLoginMetadata{}}
	if err := db.UserLogin.Insert(ctx, row); err != nil {
		t.Fatalf("inserting the login: %v", err)
	}
	login := &bridgev2.UserLogin{UserLogin: row, Bridge: &bridgev2.Bridge{DB: db}, Log: zerolog.Nop()}
	return newClient(&Connector{}, login)
}

// TestStorageCallbacksRace runs gotd's storage callbacks (session, update
// state) and the remembering of users' access hashes at once, as gotd's
// goroutines do: with -race, a save serialising the metadata while another
// callback changes it is reported. Afterwards the database holds the last
// of each.
func TestStorageCallbacksRace(t *testing.T) {
	ctx := context.Background()
	tc := newStoredClient(t)
	session, state := &sessionStorage{client: tc}, &stateStorage{client: tc}
	const rounds = 50
	var wg sync.WaitGroup
	errs := make(chan error, 3*rounds)
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 1; i <= rounds; i++ {
			errs <- session.StoreSession(ctx, fmt.Appendf(nil, "session %d", i))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 1; i <= rounds; i++ {
			errs <- state.SetState(ctx, 0, updatesState(i))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 1; i <= rounds; i++ {
			tc.rememberUser(ctx, &tg.User{ID: int64(2000 + i), AccessHash: int64(i)})
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	stored, err := tc.login.Bridge.DB.UserLogin.GetByID(ctx, tc.login.ID)
	if err != nil || stored == nil {
		t.Fatalf("reading the login back: %v, %v", stored, err)
	}
	m := stored.Metadata.(*UserLoginMetadata)
	if !bytes.Equal(m.Session, []byte(fmt.Sprintf("session %d", rounds))) || m.Pts != rounds || len(m.AccessHashes) != rounds || m.AccessHashes[2000+rounds] != rounds {
		t.Errorf("stored metadata: session %q, pts %d, %d access hashes; want the last of each", m.Session, m.Pts, len(m.AccessHashes))
	}
}

func updatesState(i int) updates.State { return updates.State{Pts: i, Qts: i, Date: i, Seq: i} }

// TestAccessHashesBounded: a login keeps at most maxAccessHashes hashes,
// the newest always among them.
func TestAccessHashesBounded(t *testing.T) {
	var m UserLoginMetadata
	for i := range int64(maxAccessHashes + 10) {
		if !m.rememberAccessHash(i+1, i+100) {
			t.Fatalf("hash of user %d not new", i+1)
		}
	}
	if len(m.AccessHashes) != maxAccessHashes {
		t.Errorf("%d hashes kept, want %d", len(m.AccessHashes), maxAccessHashes)
	}
	if m.AccessHashes[maxAccessHashes+10] != maxAccessHashes+109 {
		t.Error("the newest hash was dropped")
	}
	if m.rememberAccessHash(maxAccessHashes+10, maxAccessHashes+109) {
		t.Error("a known hash was reported new")
	}
}
