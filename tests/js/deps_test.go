package js

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissingDepsSkipOrFail runs this package's scenario test where its
// npm packages are missing: it skips naming the reason, and fails under
// MATRIXOS_REQUIRE_JS=1 (or CI) instead of passing silently.
func TestMissingDepsSkipOrFail(t *testing.T) {
	run := func(env ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMatrixJSSDKScenario$", "-test.v")
		cmd.Dir = t.TempDir() // no node_modules here
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "CI" && k != "MATRIXOS_REQUIRE_JS" {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "node_modules is missing") && !strings.Contains(out, "node not found") {
		t.Errorf("without the npm packages: %v\n%s", err, out)
	}
	out, err = run("MATRIXOS_REQUIRE_JS=1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "MATRIXOS_REQUIRE_JS=1") {
		t.Errorf("without the npm packages under MATRIXOS_REQUIRE_JS=1: %v\n%s", err, out)
	}
}
