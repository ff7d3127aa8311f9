package slack

import (
	"context"
	"errors"
	"testing"
	"time"

	slackapi "github.com/slack-go/slack"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/matrixos/matrixos/internal/bridges/slack/slackfake"
)

func TestIDsRoundTrip(t *testing.T) {
	key := portalKey("T1", "C2")
	team, channel, err := parsePortalID(key.ID)
	if err != nil || team != "T1" || channel != "C2" {
		t.Errorf("parsePortalID(%q) = %q, %q, %v", key.ID, team, channel, err)
	}
	ghost := ghostID("T1", "U2")
	if ghost != "t1-u2" {
		t.Errorf("ghostID = %q, want lower case", ghost)
	}
	if team, user, ok := parseGhostID(ghost); !ok || team != "T1" || user != "U2" {
		t.Errorf("parseGhostID(%q) = %q, %q, %v", ghost, team, user, ok)
	}
	msg := messageID("T1", "C2", "1712345678.000100")
	if channel, ts, err := parseMessageID(msg); err != nil || channel != "C2" || ts != "1712345678.000100" {
		t.Errorf("parseMessageID(%q) = %q, %q, %v", msg, channel, ts, err)
	}
	for _, bad := range []string{"", "T1", "T1-C2", "T1--1.2"} {
		if _, _, err := parseMessageID(networkid.MessageID(bad)); err == nil {
			t.Errorf("parseMessageID(%q) accepted a malformed ID", bad)
		}
	}
	if got := parseTS("1712345678.000100"); !got.Equal(time.Unix(1712345678, 100000)) {
		t.Errorf("parseTS = %v", got)
	}
	if got := parseTS("garbage"); !got.IsZero() {
		t.Errorf("parseTS(garbage) = %v, want zero", got)
	}
}

func TestEmojiMapping(t *testing.T) {
	tests := []struct {
		slackName, matrixKey string
	}{
		{"thumbsup", "👍"}, {"+1", "👍"}, {"+1::skin-tone-3", "👍"}, {"tada", "🎉"}, {"heart", "❤️"},
		{"partyparrot", ":partyparrot:"},
	}
	for _, tt := range tests {
		if got := emojiForSlack(tt.slackName); got != tt.matrixKey {
			t.Errorf("emojiForSlack(%q) = %q, want %q", tt.slackName, got, tt.matrixKey)
		}
	}
	back := []struct {
		key, name string
		ok        bool
	}{
		{"👍", "+1", true}, {"👍\ufe0f", "+1", true}, {"❤", "heart", true}, {"❤️", "heart", true},
		{":partyparrot:", "partyparrot", true}, {"🦜", "", false}, {":bad name:", "", false}, {"", "", false},
	}
	for _, tt := range back {
		name, ok := slackNameForEmoji(tt.key)
		if name != tt.name || ok != tt.ok {
			t.Errorf("slackNameForEmoji(%q) = %q, %v, want %q, %v", tt.key, name, ok, tt.name, tt.ok)
		}
	}
}

// TestDownloadFileRefusesOversized: a Slack file larger than the limit is
// not read past it.
func TestDownloadFileRefusesOversized(t *testing.T) {
	fake := slackfake.New(t)
	alice := fake.AddUser("alice", "Alice")
	channel := fake.AddChannel("general", alice, fake.BotUserID())
	fake.UploadFile(channel, alice, "big.bin", "application/octet-stream", make([]byte, 4096), "")
	file := fake.Messages(channel)[0].Files[0]
	sc := &Client{api: slackapi.New(fake.BotToken(), slackapi.OptionAPIURL(fake.APIURL)), limits: newRateLimiter()}

	if _, err := sc.downloadFile(context.Background(), file.URLPrivateDownload, 1000); !errors.Is(err, errFileTooLarge) {
		t.Fatalf("downloading 4096 bytes with a 1000-byte limit: %v, want errFileTooLarge", err)
	}
	data, err := sc.downloadFile(context.Background(), file.URLPrivateDownload, 4096)
	if err != nil || len(data) != 4096 {
		t.Fatalf("downloading within the limit: %d bytes, %v", len(data), err)
	}
}
