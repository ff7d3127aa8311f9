//go:build goolm

package host_test

import (
	"os"
	"testing"

	mautrixas "maunium.net/go/mautrix/appservice"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/bridges/host"
)

// TestLoadConfig: the config file's network section is decoded over the
// connector's example, and what must match the node (homeserver,
// appservice tokens and address, bot) comes from the options and the
// registration whatever the file says.
func TestLoadConfig(t *testing.T) {
	data := t.TempDir()
	files := bridges.Files{DataDir: data, ServerName: "example.org", Name: "echo", Network: "greeting: hi\n"}
	if err := files.Write(); err != nil {
		t.Fatal(err)
	}
	path := bridges.ConfigFile(data, "echo")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("homeserver:\n    address: http://evil.example\n    domain: evil.example\nappservice:\n    as_token: evil\n    port: 1\n    bot:\n        username: evilbot\n")
	f.Close()

	network := bridgetest.EchoKind("echo", 0, nil).NewNetwork()
	cfg, err := host.LoadConfig(host.Options{
		Name: "echo", Dir: bridges.Dir(data, "echo"), RegistrationFile: bridges.RegistrationFile(data, "echo"),
		HomeserverURL: "http://127.0.0.1:8008", ServerName: "example.org", Network: network,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := mautrixas.LoadRegistration(bridges.RegistrationFile(data, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Homeserver.Address != "http://127.0.0.1:8008" || cfg.Homeserver.Domain != "example.org" {
		t.Errorf("homeserver %+v", cfg.Homeserver)
	}
	if cfg.AppService.ASToken != reg.AppToken || cfg.AppService.HSToken != reg.ServerToken ||
		cfg.AppService.Address != reg.URL || cfg.AppService.Bot.Username != "echobot" || cfg.AppService.ID != "bridge-echo" {
		t.Errorf("appservice %+v, registration %+v", cfg.AppService, reg)
	}
	if got := network.(*bridgetest.EchoNetwork).Config.Greeting; got != "hi" {
		t.Errorf("network greeting %q, want the file's hi", got)
	}
	if !cfg.Encryption.Allow || !cfg.Encryption.Appservice || !cfg.Encryption.MSC4190 || cfg.Encryption.PickleKey == "" {
		t.Errorf("encryption %+v", cfg.Encryption)
	}
}
