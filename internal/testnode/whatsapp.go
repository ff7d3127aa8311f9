package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// WhatsAppModule and WhatsAppVersion are the mautrix-whatsapp release the
// external-bridge test runs unchanged against the node; .ci/run installs
// it where WhatsAppBinary looks.
const (
	WhatsAppModule  = "go.mau.fi/mautrix-whatsapp"
	WhatsAppVersion = "v0.2511.0"
)

// whatsAppBuildTimeout bounds building mautrix-whatsapp (a cgo build of
// SQLite among the rest: about three minutes of CPU).
const whatsAppBuildTimeout = 8 * time.Minute

// WhatsAppCacheDir is where the mautrix-whatsapp binary is kept between
// runs: $XDG_CACHE_HOME/matrixos/mautrix-whatsapp-VERSION (~/.cache
// without XDG_CACHE_HOME).
func WhatsAppCacheDir() (string, error) {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "matrixos", "mautrix-whatsapp-"+WhatsAppVersion), nil
}

var whatsApp struct {
	once sync.Once
	path string
	err  error
}

// WhatsAppBinary returns the path of a mautrix-whatsapp binary of
// WhatsAppVersion: $MATRIXOS_WHATSAPP, or the one in WhatsAppCacheDir,
// built there first when it is missing (BuildWhatsApp). When it cannot be
// built it skips tb saying why, or fails it when
// MATRIXOS_REQUIRE_WHATSAPP=1 (as .ci/run sets after installing it).
func WhatsAppBinary(tb testing.TB) string {
	tb.Helper()
	whatsApp.once.Do(func() {
		if path := os.Getenv("MATRIXOS_WHATSAPP"); path != "" {
			whatsApp.path = path
			return
		}
		dir, err := WhatsAppCacheDir()
		if err != nil {
			whatsApp.err = err
			return
		}
		whatsApp.path = filepath.Join(dir, "mautrix-whatsapp")
		if _, err := os.Stat(whatsApp.path); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), whatsAppBuildTimeout)
		defer cancel()
		whatsApp.err = BuildWhatsApp(ctx, whatsApp.path)
	})
	if whatsApp.err != nil {
		msg := "mautrix-whatsapp " + WhatsAppVersion + " cannot be built: " + whatsApp.err.Error()
		if os.Getenv("MATRIXOS_REQUIRE_WHATSAPP") == "1" {
			tb.Fatal(msg + " (MATRIXOS_REQUIRE_WHATSAPP=1)")
		}
		tb.Skip(msg)
	}
	out, err := exec.Command(whatsApp.path, "--version-json").Output()
	if err != nil {
		tb.Fatalf("mautrix-whatsapp: %s --version-json: %v", whatsApp.path, err)
	}
	var v struct {
		BaseVersion string // "25.11" for v0.2511.0
	}
	if err := json.Unmarshal(out, &v); err != nil || calVerTag(v.BaseVersion) != WhatsAppVersion {
		tb.Fatalf("mautrix-whatsapp: %s is version %s; the test needs %s", whatsApp.path, out, WhatsAppVersion)
	}
	return whatsApp.path
}

// calVerTag is the module version of a mautrix calendar version: v0.2511.0
// for 25.11, v0.2511.1 for 25.11.1.
func calVerTag(base string) string {
	parts := strings.Split(base, ".")
	if len(parts) < 2 {
		return ""
	}
	patch := "0"
	if len(parts) > 2 {
		patch = parts[2]
	}
	return "v0." + parts[0] + parts[1] + "." + patch
}

// BuildWhatsApp builds mautrix-whatsapp WhatsAppVersion into binary: its
// module is downloaded from the module proxy and built with cgo (its SQLite
// driver needs it) and goolm (no libolm), without this repository's
// GOEXPERIMENT. It builds in the module's directory rather than with `go
// install module@version`, which also asks the proxy for the module's
// version list (to warn of deprecation) and fails where only module
// downloads are allowed.
func BuildWhatsApp(ctx context.Context, binary string) error {
	env := append(os.Environ(), "GOEXPERIMENT=", "CGO_ENABLED=1", "GOFLAGS=-mod=readonly -buildvcs=false", "GOWORK=off")
	download := exec.CommandContext(ctx, "go", "mod", "download", "-json", WhatsAppModule+"@"+WhatsAppVersion)
	download.Env = env
	download.Dir = os.TempDir()
	var stderr bytes.Buffer
	download.Stderr = &stderr
	out, err := download.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s@%s: %w: %s%s", WhatsAppModule, WhatsAppVersion, err, stderr.Bytes(), out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s@%s: no module directory (%v): %s %s", WhatsAppModule, WhatsAppVersion, err, mod.Error, out)
	}
	if err := os.MkdirAll(filepath.Dir(binary), 0o755); err != nil {
		return err
	}
	tmp := binary + ".tmp"
	build := exec.CommandContext(ctx, "go", "build", "-tags", "goolm", "-o", tmp, "./cmd/mautrix-whatsapp")
	build.Env = env
	build.Dir = mod.Dir
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build ./cmd/mautrix-whatsapp in %s (cgo and a C compiler are needed for its SQLite): %w\n%s", mod.Dir, err, out)
	}
	return os.Rename(tmp, binary)
}
