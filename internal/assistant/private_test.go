//go:build goolm

package assistant_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/assistant/openaifake"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAssistantFilesPrivate: the assistant store's write-ahead log and
// shared-memory index are 0600 like the store, whatever the umask, and
// an API key file that others may read keeps the model server off (the
// offline engine answers).
func TestAssistantFilesPrivate(t *testing.T) {
	fake := openaifake.Start(t, func(r openaifake.Request) string { return "The team picked March 3rd." }, nil)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("sekret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant, func(c *config.Config) {
		c.AssistantModelURL, c.AssistantModel, c.AssistantAPIKeyFile = fake.URL, "fake-model", keyFile
		c.AssistantModelPrivate = true
	})
	alice := n.Register("alice")
	room := plainRoom(t, alice, event.HistoryVisibilityShared)
	testnode.SendText(t, alice, room, "We agreed on March 3rd for the release.")
	if got := ask(t, alice, room, "!assistant summary last 1h"); !strings.Contains(got, "answered by the offline engine") || len(fake.Requests()) != 0 {
		t.Errorf("with a key file others may read, the model server got %d requests; the answer:\n%s", len(fake.Requests()), got)
	}
	for _, f := range []string{assistant.StoreFile + "-wal", assistant.StoreFile + "-shm"} {
		st, err := os.Stat(filepath.Join(n.Config.DataDir, "assistant", f))
		if err != nil {
			t.Fatalf("assistant store: %v", err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f, st.Mode().Perm())
		}
	}
}
