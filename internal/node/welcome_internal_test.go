package node

import (
	"os"
	"testing"
)

// TestCommandName: the banner names the go run command, not go run's
// temporary binary.
func TestCommandName(t *testing.T) {
	saved := os.Args[0]
	defer func() { os.Args[0] = saved }()
	for arg0, want := range map[string]string{
		"/tmp/go-build1234/b001/exe/matrixos": "GOEXPERIMENT=jsonv2 go run ./cmd/matrixos",
		"bin/matrixos":                        "bin/matrixos",
		"/usr/local/bin/matrixos":             "/usr/local/bin/matrixos",
	} {
		os.Args[0] = arg0
		if got := commandName(); got != want {
			t.Errorf("commandName() with os.Args[0] %q = %q, want %q", arg0, got, want)
		}
	}
}
