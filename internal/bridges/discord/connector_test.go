package discord

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/bwmarrin/discordgo"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2"
)

func TestValidateConfig(t *testing.T) {
	tests := []struct {
		name    string
		config  Config
		wantErr string
	}{
		{"empty means the real Discord", Config{}, ""},
		{"fake", Config{APIURL: "http://127.0.0.1:1234", CDNURL: "http://127.0.0.1:1234/"}, ""},
		{"not http", Config{APIURL: "ftp://example.com/"}, "api_url"},
		{"no host", Config{CDNURL: "https:///x"}, "cdn_url"},
		{"negative catch-up", Config{CatchUpLimit: -1}, "catch_up_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConnector()
			c.Config = tt.config
			err := c.ValidateConfig()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one about %s", err, tt.wantErr)
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c := NewConnector()
	example, data, _ := c.GetConfig()
	if err := yaml.Unmarshal([]byte(example), data); err != nil {
		t.Fatalf("example config: %v", err)
	}
	if err := c.ValidateConfig(); err != nil {
		t.Fatalf("example config does not validate: %v", err)
	}
	if c.Config.CatchUpLimit != defaultCatchUpLimit {
		t.Fatalf("catch_up_limit = %d, want %d", c.Config.CatchUpLimit, defaultCatchUpLimit)
	}
}

// TestInitRoutesDiscordgoLogs initializes connectors while discordgo logs
// from another goroutine, as a previous run's goroutines do after a restart
// (the race detector flagged the reassigned discordgo.Logger), and checks
// that discordgo's messages go to the connector initialized last.
func TestInitRoutesDiscordgoLogs(t *testing.T) {
	var first, second bytes.Buffer
	NewConnector().Init(&bridgev2.Bridge{Log: zerolog.New(&first)})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				discordgo.Logger(discordgo.LogDebug, 0, "from an earlier run")
			}
		}
	}()
	var secondSafe syncBuffer
	for range 100 {
		NewConnector().Init(&bridgev2.Bridge{Log: zerolog.New(&secondSafe)})
	}
	close(stop)
	<-done
	NewConnector().Init(&bridgev2.Bridge{Log: zerolog.New(&second)})
	discordgo.Logger(discordgo.LogError, 0, "to the %s bridge", "current")
	if !strings.Contains(second.String(), "to the current bridge") || strings.Contains(first.String(), "to the current bridge") {
		t.Errorf("discordgo's message went to the wrong log: first %q, last %q", first.String(), second.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
