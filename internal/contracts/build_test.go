package contracts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// clangFlags build a contract from one C file (docs/contracts.md).
var clangFlags = []string{"--target=wasm32", "-mbulk-memory", "-O2", "-nostdlib", "-Wl,--no-entry", "-Wl,--export-dynamic"}

var (
	builtMu sync.Mutex
	built   = map[string][]byte{}
)

// buildContract compiles a C contract (a path relative to this package)
// with clang and wasm-ld. The test is skipped when they are missing,
// unless MATRIXOS_REQUIRE_CLANG is set (CI installs them).
func buildContract(t testing.TB, src string) []byte {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if b, ok := built[src]; ok {
		return b
	}
	clang, err := exec.LookPath("clang")
	if err == nil {
		_, err = exec.LookPath("wasm-ld")
	}
	if err != nil {
		if os.Getenv("MATRIXOS_REQUIRE_CLANG") != "" {
			t.Fatalf("MATRIXOS_REQUIRE_CLANG is set but the toolchain is missing: %v", err)
		}
		t.Skipf("contracts are built with clang and wasm-ld (apt-get install clang lld): %v", err)
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), ".c")+".wasm")
	cmd := exec.Command(clang, append(clangFlags, "-o", out, src)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", src, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	built[src] = b
	return b
}
