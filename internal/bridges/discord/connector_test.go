package discord

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
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
