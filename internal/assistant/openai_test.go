package assistant_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/assistant/openaifake"
	"github.com/matrixos/matrixos/internal/netguard"
)

// modelClient is the guarded client a node would use for the fake on
// loopback, explicitly allowed.
func modelClient(t *testing.T, url string, timeout time.Duration) *assistant.OpenAI {
	t.Helper()
	return engineFor(t, url, timeout, "")
}

func engineFor(t *testing.T, url string, timeout time.Duration, embeddings string) *assistant.OpenAI {
	t.Helper()
	client, err := assistant.ModelClient(context.Background(), url, nil, true, timeout)
	if err != nil {
		t.Fatalf("model client: %v", err)
	}
	return assistant.NewOpenAI(assistant.OpenAIOptions{URL: url, Model: "fake-model", APIKey: "sekret",
		EmbeddingsModel: embeddings, Client: client})
}

// TestOpenAIChat: non-streamed and streamed completions give the same
// text, with the API key sent as a bearer token.
func TestOpenAIChat(t *testing.T) {
	fake := openaifake.Start(t, func(r openaifake.Request) string { return "The release is on March 3rd." }, nil)
	for _, stream := range []bool{false, true} {
		client, err := assistant.ModelClient(context.Background(), fake.URL, nil, true, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		o := assistant.NewOpenAI(assistant.OpenAIOptions{URL: fake.URL, Model: "fake-model", APIKey: "sekret", Stream: stream, Client: client})
		got, err := o.Chat(context.Background(), []assistant.ChatMessage{{Role: "user", Content: "when?"}})
		if err != nil {
			t.Fatalf("stream %v: %v", stream, err)
		}
		if got != "The release is on March 3rd." {
			t.Errorf("stream %v: %q", stream, got)
		}
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || reqs[0].Stream || !reqs[1].Stream {
		t.Fatalf("requests: %+v", reqs)
	}
	for _, r := range reqs {
		if r.Authorization != "Bearer sekret" || r.Model != "fake-model" {
			t.Errorf("request auth %q model %q", r.Authorization, r.Model)
		}
	}
}

// TestOpenAIErrors: the server's error JSON becomes an APIError with its
// status and message; a server slower than the timeout is given up on.
func TestOpenAIErrors(t *testing.T) {
	fake := openaifake.Start(t, func(openaifake.Request) string { return "ok" }, nil)
	o := modelClient(t, fake.URL, 300*time.Millisecond)
	fake.Fail(401, "Incorrect API key provided")
	_, err := o.Chat(context.Background(), []assistant.ChatMessage{{Role: "user", Content: "hi"}})
	var apiErr *assistant.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Message != "Incorrect API key provided" {
		t.Errorf("error answer: %v", err)
	}
	fake.Fail(0, "")
	fake.Delay(3 * time.Second)
	start := time.Now()
	_, err = o.Chat(context.Background(), []assistant.ChatMessage{{Role: "user", Content: "hi"}})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("slow server: %v after %v, want a timeout after 300ms", err, time.Since(start))
	}
}

// TestModelClientRefusesPrivateAddresses: without the explicit allowance
// a model URL on loopback is refused by the SSRF guard.
func TestModelClientRefusesPrivateAddresses(t *testing.T) {
	fake := openaifake.Start(t, func(openaifake.Request) string { return "ok" }, nil)
	client, err := assistant.ModelClient(context.Background(), fake.URL, nil, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	o := assistant.NewOpenAI(assistant.OpenAIOptions{URL: fake.URL, Model: "m", Client: client})
	_, err = o.Chat(context.Background(), []assistant.ChatMessage{{Role: "user", Content: "hi"}})
	if !errors.Is(err, netguard.ErrForbidden) {
		t.Errorf("loopback model without allowance: %v, want ErrForbidden", err)
	}
	if len(fake.Requests()) != 0 {
		t.Errorf("the request reached the server")
	}
	if _, err := assistant.ModelClient(context.Background(), "ftp://x/v1", nil, false, time.Second); err == nil {
		t.Errorf("an ftp URL was accepted")
	}
}

// TestOpenAIEngine: the engine's answer names its sources with links,
// and embeddings order the candidates.
func TestOpenAIEngine(t *testing.T) {
	fake := openaifake.Start(t, func(r openaifake.Request) string { return "March 3rd [1]." }, nil)
	o := engineFor(t, fake.URL, 5*time.Second, "fake-embed")
	sources := []assistant.Message{
		{EventID: "$a", Sender: "@x:h", Body: "zzz qqq", Link: "https://matrix.to/#/!r/$a"},
		{EventID: "$b", Sender: "@y:h", Body: "release date march", Link: "https://matrix.to/#/!r/$b"},
	}
	ranked, err := o.Rank(context.Background(), "release date", sources)
	if err != nil || ranked[0].EventID != "$b" {
		t.Fatalf("rank: %v %v", ranked, err)
	}
	got, err := o.Answer(context.Background(), "when?", ranked)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "March 3rd [1].") || !strings.Contains(got, "[1] @y:h https://matrix.to/#/!r/$b") {
		t.Errorf("answer: %q", got)
	}
	if p := fake.Requests()[0].Prompt(); !strings.Contains(p, "release date march") || !strings.Contains(p, "when?") {
		t.Errorf("prompt lacks the sources or the question: %q", p)
	}
	if !strings.Contains(o.Name(), "fake-model") {
		t.Errorf("name %q", o.Name())
	}
}
