//go:build goolm

package host_test

import (
	"os"
	"testing"

	mautrixas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"

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

// TestLoadConfigRelayFormats: a config file without a relay section still
// has mautrix's relay formats, which relaying a message needs (bridgev2
// formatted the name with a nil template and panicked before).
func TestLoadConfigRelayFormats(t *testing.T) {
	data := t.TempDir()
	files := bridges.Files{DataDir: data, ServerName: "example.org", Name: "echo", Network: "greeting: hi\n"}
	if err := files.Write(); err != nil {
		t.Fatal(err)
	}
	cfg, err := host.LoadConfig(host.Options{
		Name: "echo", Dir: bridges.Dir(data, "echo"), RegistrationFile: bridges.RegistrationFile(data, "echo"),
		HomeserverURL: "http://127.0.0.1:8008", ServerName: "example.org", Network: bridgetest.EchoKind("echo", 0, nil).NewNetwork(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bridge.Relay.Enabled {
		t.Error("relay mode's set-relay is allowed by default")
	}
	sender := &bridgev2.OrigSender{DisambiguatedName: "Bob"}
	if got := cfg.Bridge.Relay.FormatName(sender); got != "Bob" {
		t.Errorf("relayed name = %q, want Bob", got)
	}
	content, err := cfg.Bridge.Relay.FormatMessage(&event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, sender)
	if err != nil || content.FormattedBody != "<b>Bob</b>: hi" {
		t.Errorf("relayed message = %q, %v; want <b>Bob</b>: hi", content.FormattedBody, err)
	}
}
