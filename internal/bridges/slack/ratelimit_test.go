package slack

import (
	"context"
	"testing"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/matrixos/matrixos/internal/bridges/slack/slackfake"
)

// TestCallSlackRetriesRateLimited: a call Slack answers "ratelimited" is
// made again after Retry-After, and succeeds.
func TestCallSlackRetriesRateLimited(t *testing.T) {
	fake := slackfake.New(t)
	api := slackapi.New(fake.BotToken(), slackapi.OptionAPIURL(fake.APIURL))
	channel := fake.AddChannel("general", fake.BotUserID())
	fake.RateLimit("chat.postMessage", 2, 1)

	start := time.Now()
	ctx := context.Background()
	_, err := callSlack(ctx, newRateLimiter(), "chat.postMessage", channel, func() (string, error) {
		_, ts, err := api.PostMessageContext(ctx, channel, slackapi.MsgOptionText("hi", false))
		return ts, err
	})
	if err != nil {
		t.Fatalf("callSlack: %v", err)
	}
	if n := fake.Calls("chat.postMessage"); n != 3 {
		t.Errorf("chat.postMessage called %d times, want 3 (two rate-limited)", n)
	}
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Errorf("took %s, want at least the two Retry-After seconds", elapsed)
	}
	if msgs := fake.Messages(channel); len(msgs) != 1 {
		t.Errorf("channel has %d messages, want 1", len(msgs))
	}
}

// TestRateLimiterPacesPostsPerChannel: chat.postMessage is paced to about
// one per second per channel after a short burst, and channels do not wait
// for each other.
func TestRateLimiterPacesPostsPerChannel(t *testing.T) {
	limits := newRateLimiter()
	ctx := context.Background()
	start := time.Now()
	for range 5 {
		if err := limits.bucket("chat.postMessage", "C1").Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if elapsed := time.Since(start); elapsed < 1500*time.Millisecond {
		t.Errorf("5 posts to one channel took %s, want about 2s (burst 3, then 1/s)", elapsed)
	}
	start = time.Now()
	if err := limits.bucket("chat.postMessage", "C2").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
		t.Errorf("first post to another channel waited %s", elapsed)
	}
}
