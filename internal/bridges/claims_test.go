//go:build goolm

package bridges_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestEnableRefusesExistingAccounts: enabling a bridge whose sender
// (@echobot) or ghost namespace (@echo_...) matches accounts that people
// registered is refused, naming them, and writes no registration (whose
// as_token would act as them); once they are gone from its namespace the
// bridge's own accounts do not keep it from being enabled again.
func TestEnableRefusesExistingAccounts(t *testing.T) {
	node := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	human := node.Client()
	resp, err := human.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "echobot", Password: testnode.Password})
	if err != nil {
		t.Fatal(err)
	}
	human.SetCredentials(resp.UserID, resp.AccessToken)
	ghost := node.Register("echo_x")
	m := startManager(t, node, bridgetest.EchoKind("echo", 0, nil))
	_, err = m.Enable(ctx, "echo", "")
	if !errors.Is(err, bridges.ErrInvalid) {
		t.Fatalf("Enable = %v, want ErrInvalid", err)
	}
	for _, u := range []string{string(resp.UserID), string(ghost.UserID)} {
		if !strings.Contains(err.Error(), u) {
			t.Errorf("error %q does not name %s", err, u)
		}
	}
	if _, err := os.Stat(bridges.RegistrationFile(node.Config.DataDir, "echo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused bridge left its registration: %v", err)
	}
	if who, err := human.Whoami(ctx); err != nil || who.UserID != resp.UserID {
		t.Errorf("the human's own token: %v %v", who, err)
	}

	// Another bridge, whose namespace holds no one's account, is enabled,
	// and enabled again after it registered its sender.
	m2 := startManager(t, node, bridgetest.EchoKind("other", 0, nil))
	for range 2 {
		if _, err := m2.Enable(ctx, "other", ""); err != nil {
			t.Fatal(err)
		}
		waitState(t, m2, "other", bridges.StateRunning)
	}
}

// TestEnableRefusesOverlappingRegistration: a bridge is not enabled when a
// registration installed by hand has its sender or claims its namespace
// exclusively.
func TestEnableRefusesOverlappingRegistration(t *testing.T) {
	for _, tc := range []struct{ name, sender, users string }{
		{"same sender", "echobot", `@whatsapp_.*:localhost`},
		{"exclusive ghosts", "whatsappbot", `@echo_.*:localhost`},
		{"wider namespace", "whatsappbot", `@e.*:localhost`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := testnode.Start(t, testnode.SQLite)
			dir := appservice.Dir(node.Config.DataDir)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "whatsapp.yaml")
			reg := "id: whatsapp\nurl: null\nas_token: as-wa\nhs_token: hs-wa\nsender_localpart: " + tc.sender +
				"\nnamespaces:\n  users:\n  - exclusive: true\n    regex: '" + tc.users + "'\n"
			if err := os.WriteFile(file, []byte(reg), 0o600); err != nil {
				t.Fatal(err)
			}
			m := startManager(t, node, bridgetest.EchoKind("echo", 0, nil))
			_, err := m.Enable(context.Background(), "echo", "")
			if !errors.Is(err, bridges.ErrInvalid) || !strings.Contains(err.Error(), "whatsapp") {
				t.Fatalf("Enable = %v, want ErrInvalid naming the whatsapp registration", err)
			}
		})
	}
}
