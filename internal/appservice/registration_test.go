package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

const bridgeYAML = `
id: telegram
url: http://127.0.0.1:29317
as_token: as-secret
hs_token: hs-secret
sender_localpart: telegrambot
rate_limited: false
protocols: [telegram]
namespaces:
  users:
  - regex: '@telegram_.+:example\.org'
    exclusive: true
  - regex: '@shared_.+:example\.org'
    exclusive: false
  aliases:
  - regex: '#telegram_.+:example\.org'
    exclusive: true
  rooms:
  - regex: '!bridged:example\.org'
    exclusive: false
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
io.element.msc4190: true
`

func TestParseRegistration(t *testing.T) {
	reg, err := ParseRegistration([]byte(bridgeYAML))
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID != "telegram" || reg.URL != "http://127.0.0.1:29317" || reg.ASToken != "as-secret" || reg.HSToken != "hs-secret" {
		t.Errorf("fields: %+v", reg)
	}
	if reg.RateLimited || !reg.ReceiveEphemeral || !reg.DeviceLists || !reg.DeviceManagement || !reg.ToDevice {
		t.Errorf("flags: %+v", reg)
	}
	if len(reg.Protocols) != 1 || reg.Protocols[0] != "telegram" {
		t.Errorf("protocols: %v", reg.Protocols)
	}

	minimal, err := ParseRegistration([]byte("id: a\nurl: null\nas_token: x\nhs_token: y\nsender_localpart: bot\nnamespaces: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if minimal.URL != "" || !minimal.RateLimited || minimal.ReceiveEphemeral || minimal.ToDevice {
		t.Errorf("defaults: %+v", minimal)
	}
}

func TestParseRegistrationRefusals(t *testing.T) {
	valid := "id: a\nas_token: x\nhs_token: y\nsender_localpart: bot\nnamespaces: {}\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"not yaml", "id: [", "not a YAML"},
		{"no id", strings.Replace(valid, "id: a\n", "", 1), "id is missing"},
		{"empty as_token", strings.Replace(valid, "as_token: x", "as_token: ''", 1), "as_token is missing"},
		{"no hs_token", strings.Replace(valid, "hs_token: y\n", "", 1), "hs_token is missing"},
		{"no sender", strings.Replace(valid, "sender_localpart: bot\n", "", 1), "sender_localpart is missing"},
		{"no namespaces", strings.Replace(valid, "namespaces: {}\n", "", 1), "namespaces is missing"},
		{"same tokens", strings.Replace(valid, "hs_token: y", "hs_token: x", 1), "the same"},
		{"bad sender", strings.Replace(valid, "sender_localpart: bot", "sender_localpart: '@bot:x'", 1), "not a valid localpart"},
		{"bad url", valid + "url: ftp://x\n", "not an http or https URL"},
		{"bad regex", strings.Replace(valid, "namespaces: {}", "namespaces: {users: [{regex: '(', exclusive: true}]}", 1), "namespaces.users[0]: invalid regex"},
		{"no regex", strings.Replace(valid, "namespaces: {}", "namespaces: {rooms: [{exclusive: true}]}", 1), "namespaces.rooms[0]: regex is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRegistration([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	g := NewRegistry("example.org")
	reg, err := ParseRegistration([]byte(bridgeYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Set([]*Registration{reg}); err != nil {
		t.Fatal(err)
	}
	if reg.Sender("example.org") != "@telegrambot:example.org" {
		t.Errorf("sender %s", reg.Sender("example.org"))
	}
	users := []struct {
		user                  id.UserID
		interested, exclusive bool
	}{
		{"@telegrambot:example.org", true, true},
		{"@telegrambot:other.org", false, false},
		{"@telegram_123:example.org", true, true},
		{"@shared_1:example.org", true, false},
		{"@alice:example.org", false, false},
		{"@xtelegram_1:example.org", false, false},     // anchored at the start
		{"@telegram_1:example.org.evil", false, false}, // and at the end
		{"@telegram_:example.org", false, false},       // .+ needs one character
	}
	for _, u := range users {
		if got := reg.InterestedInUser(u.user); got != u.interested {
			t.Errorf("InterestedInUser(%s) = %v", u.user, got)
		}
		if got := reg.ExclusiveUser(u.user); got != u.exclusive {
			t.Errorf("ExclusiveUser(%s) = %v", u.user, got)
		}
		if got := g.ExclusiveUserOwner(u.user) == reg; got != u.exclusive {
			t.Errorf("ExclusiveUserOwner(%s) = %v", u.user, got)
		}
	}
	if !reg.InterestedInAlias("#telegram_chat:example.org") || !reg.ExclusiveAlias("#telegram_chat:example.org") || g.ExclusiveAliasOwner("#telegram_chat:example.org") != reg {
		t.Error("alias namespace not matched")
	}
	if reg.InterestedInAlias("#other:example.org") || g.ExclusiveAliasOwner("#other:example.org") != nil {
		t.Error("alias outside the namespace matched")
	}
	if !reg.InterestedInRoom("!bridged:example.org") || reg.InterestedInRoom("!other:example.org") {
		t.Error("room namespace")
	}
}

func TestInterestedInEvent(t *testing.T) {
	g := NewRegistry("example.org")
	reg, err := ParseRegistration([]byte(bridgeYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Set([]*Registration{reg}); err != nil {
		t.Fatal(err)
	}
	ghost := "@telegram_1:example.org"
	tests := []struct {
		name    string
		ev      rooms.Event
		members map[id.UserID]string
		aliases []id.RoomAlias
		want    bool
	}{
		{"unrelated", rooms.Event{Sender: "@alice:example.org", RoomID: "!r:example.org"}, map[id.UserID]string{"@alice:example.org": "join"}, nil, false},
		{"sender", rooms.Event{Sender: id.UserID(ghost), RoomID: "!r:example.org"}, nil, nil, true},
		{"state key", rooms.Event{Sender: "@alice:example.org", RoomID: "!r:example.org", StateKey: &ghost}, nil, nil, true},
		{"room", rooms.Event{Sender: "@alice:example.org", RoomID: "!bridged:example.org"}, nil, nil, true},
		{"alias", rooms.Event{Sender: "@alice:example.org", RoomID: "!r:example.org"}, nil, []id.RoomAlias{"#x:example.org", "#telegram_x:example.org"}, true},
		{"joined member", rooms.Event{Sender: "@alice:example.org", RoomID: "!r:example.org"}, map[id.UserID]string{id.UserID(ghost): "join"}, nil, true},
		{"left member", rooms.Event{Sender: "@alice:example.org", RoomID: "!r:example.org"}, map[id.UserID]string{id.UserID(ghost): "leave"}, nil, false},
	}
	for _, tt := range tests {
		if got := reg.InterestedInEvent(&tt.ev, tt.members, tt.aliases); got != tt.want {
			t.Errorf("%s: InterestedInEvent = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirAndReload(t *testing.T) {
	dir := t.TempDir()
	regs, err := LoadDir(filepath.Join(dir, "missing"))
	if err != nil || len(regs) != 0 {
		t.Fatalf("missing dir: %v %v", regs, err)
	}
	writeFile(t, dir, "a.yaml", "id: a\nas_token: ta\nhs_token: ha\nsender_localpart: abot\nnamespaces: {}\n")
	writeFile(t, dir, "b.yml", "id: a\nas_token: tb\nhs_token: hb\nsender_localpart: bbot\nnamespaces: {}\n")
	writeFile(t, dir, "c.yaml", "id: c\nas_token: ta\nhs_token: hc\nsender_localpart: cbot\nnamespaces: {}\n")
	writeFile(t, dir, "d.yaml", "id: d\nas_token: td\nhs_token: hd\nsender_localpart: abot\nnamespaces: {}\n")
	writeFile(t, dir, "e.yaml", "id: [broken\n")
	writeFile(t, dir, "f.yaml", "id: f\nas_token: tf\nhs_token: hf\nsender_localpart: fbot\nnamespaces: {}\n")
	writeFile(t, dir, "notes.txt", "ignored")

	g := NewRegistry("example.org")
	err = g.Reload(dir)
	for _, want := range []string{"b.yml refused: id \"a\" is already registered", "c.yaml refused: as_token is already used", "d.yaml refused: sender_localpart \"abot\" is already used", "e.yaml refused: not a YAML"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	if got := len(g.All()); got != 2 {
		t.Fatalf("%d registrations loaded, want a and f", got)
	}
	if g.ByID("a") == nil || g.ByID("f") == nil || g.ByID("c") != nil {
		t.Error("ByID")
	}
	if g.ByASToken("ta") != g.ByID("a") || g.ByASToken("tb") != nil || g.ByASToken("") != nil || g.ByASToken("ha") != nil {
		t.Error("ByASToken")
	}

	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b.yml", "c.yaml", "d.yaml", "e.yaml"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, "g.yaml", "id: g\nas_token: tg\nhs_token: hg\nsender_localpart: gbot\nnamespaces: {}\n")
	if err := g.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if g.ByID("a") != nil || g.ByASToken("ta") != nil || g.ByID("g") == nil || g.ByASToken("tg") == nil {
		t.Errorf("after reload: %v", g.All())
	}
}
