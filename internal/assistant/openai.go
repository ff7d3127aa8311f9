package assistant

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/matrixos/matrixos/internal/netguard"
)

// OpenAIOptions configure the OpenAI-compatible engine.
type OpenAIOptions struct {
	// URL is the API's base URL, ending before /chat/completions
	// ("http://127.0.0.1:11434/v1" for a local Ollama).
	URL string
	// Model names the chat model; EmbeddingsModel, when set, the model
	// that ranks the messages a question may be answered from.
	Model           string
	EmbeddingsModel string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Stream asks for streamed chat completions (server-sent events).
	Stream bool
	// Client makes the requests (ModelClient's, which guards the
	// addresses it reaches); its timeout bounds each.
	Client *http.Client
}

// OpenAI is the engine that asks an OpenAI-compatible model server:
// POST {URL}/chat/completions and {URL}/embeddings.
type OpenAI struct {
	opts OpenAIOptions
}

// NewOpenAI returns the engine.
func NewOpenAI(opts OpenAIOptions) *OpenAI {
	opts.URL = strings.TrimRight(opts.URL, "/")
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: time.Minute}
	}
	return &OpenAI{opts: opts}
}

// Name implements Engine: the model's name, not the server's address,
// which may be internal.
func (o *OpenAI) Name() string {
	return fmt.Sprintf("the model %s", o.opts.Model)
}

// ChatMessage is one message of a chat completion request.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// maxModelBody bounds what the assistant reads of a model server's
// answer.
const maxModelBody = 4 << 20

// APIError is an error the model server answered, with its status and
// the message of its error JSON.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("model server answered %d: %s", e.Status, e.Message)
}

// Chat asks for a chat completion and returns its text.
func (o *OpenAI) Chat(ctx context.Context, messages []ChatMessage) (string, error) {
	req := map[string]any{"model": o.opts.Model, "messages": messages, "stream": o.opts.Stream}
	resp, err := o.post(ctx, "/chat/completions", req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxModelBody)
	if o.opts.Stream && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return readStream(body)
	}
	var out struct {
		Choices []struct {
			Message ChatMessage `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(body).Decode(&out); err != nil {
		return "", fmt.Errorf("model server: chat completion: %w", err)
	}
	if len(out.Choices) == 0 {
		return "", errors.New("model server: chat completion without choices")
	}
	return strings.TrimSpace(out.Choices[0].Message.Content), nil
}

// readStream reads a streamed chat completion: "data: {chunk}" lines up
// to "data: [DONE]", each chunk's choices[0].delta.content in turn.
func readStream(body io.Reader) (string, error) {
	var text strings.Builder
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue // comments, event names, blank separators
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			return strings.TrimSpace(text.String()), nil
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return "", fmt.Errorf("model server: stream chunk: %w", err)
		}
		if chunk.Error != nil {
			return "", &APIError{Status: http.StatusOK, Message: chunk.Error.Message}
		}
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("model server: stream: %w", err)
	}
	return "", errors.New("model server: the stream ended without [DONE]")
}

// Embed returns the embeddings of inputs.
func (o *OpenAI) Embed(ctx context.Context, inputs []string) ([][]float64, error) {
	resp, err := o.post(ctx, "/embeddings", map[string]any{"model": o.opts.EmbeddingsModel, "input": inputs})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxModelBody)).Decode(&out); err != nil {
		return nil, fmt.Errorf("model server: embeddings: %w", err)
	}
	vecs := make([][]float64, len(inputs))
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(inputs) {
			return nil, fmt.Errorf("model server: embedding index %d of %d inputs", d.Index, len(inputs))
		}
		vecs[d.Index] = d.Embedding
	}
	for i, v := range vecs {
		if len(v) == 0 {
			return nil, fmt.Errorf("model server: no embedding for input %d", i)
		}
	}
	return vecs, nil
}

// post sends a JSON request to path and returns a 200 response; another
// status is an *APIError with the message of the server's error JSON.
func (o *OpenAI) post(ctx context.Context, path string, body any) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.opts.URL+path, bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("model server: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.opts.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.opts.APIKey)
	}
	resp, err := o.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("model server: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	return nil, &APIError{Status: resp.StatusCode, Message: msg}
}

// systemPrompt tells the model what it is.
const systemPrompt = "You are the assistant of a Matrix chat room. Answer briefly, in plain text, in the language of the conversation unless asked otherwise. Use only the messages given."

// transcript formats messages for a prompt, one a line.
func transcript(msgs []Message) string {
	var b strings.Builder
	for i, m := range msgs {
		fmt.Fprintf(&b, "[%d] %s %s: %s\n", i+1, m.Time.UTC().Format("2006-01-02 15:04"), m.Sender, quoteLine(m.Body))
	}
	return b.String()
}

func (o *OpenAI) ask(ctx context.Context, prompt string) (string, error) {
	return o.Chat(ctx, []ChatMessage{{Role: "system", Content: systemPrompt}, {Role: "user", Content: prompt}})
}

// Summarize implements Engine.
func (o *OpenAI) Summarize(ctx context.Context, msgs []Message, sentences int) (string, error) {
	if len(msgs) == 0 {
		return "Nothing was said in that time.", nil
	}
	return o.ask(ctx, fmt.Sprintf("Summarize this conversation in at most %d sentences: what was decided, what is to be done, by whom.\n\n%s", sentences, transcript(msgs)))
}

// Answer implements Engine; the answer is followed by the sources' links.
func (o *OpenAI) Answer(ctx context.Context, question string, sources []Message) (string, error) {
	if len(sources) == 0 {
		return "I found nothing about that in what I read in this room.", nil
	}
	text, err := o.ask(ctx, fmt.Sprintf("Answer the question from these messages, citing them by their [number].\n\nMessages:\n%s\nQuestion: %s", transcript(sources), question))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(text)
	b.WriteString("\n\nSources:")
	for i, m := range sources {
		fmt.Fprintf(&b, "\n[%d] %s %s", i+1, m.Sender, m.Link)
	}
	return b.String(), nil
}

// Translate implements Engine.
func (o *OpenAI) Translate(ctx context.Context, text, target string) (string, error) {
	return o.ask(ctx, fmt.Sprintf("Translate this message into the language %q. Answer with the translation only.\n\n%s", target, text))
}

// Draft implements Engine.
func (o *OpenAI) Draft(ctx context.Context, msgs []Message, instruction string) (string, error) {
	prompt := "Draft a short reply to the last messages of this conversation"
	if instruction != "" {
		prompt += ", saying: " + instruction
	}
	return o.ask(ctx, prompt+".\n\n"+transcript(msgs))
}

// Rank orders candidates by how close their embeddings are to the
// question's, when an embeddings model is configured; without one it
// returns them unchanged.
func (o *OpenAI) Rank(ctx context.Context, question string, candidates []Message) ([]Message, error) {
	if o.opts.EmbeddingsModel == "" || len(candidates) < 2 {
		return candidates, nil
	}
	inputs := []string{question}
	for _, m := range candidates {
		inputs = append(inputs, m.Body)
	}
	vecs, err := o.Embed(ctx, inputs)
	if err != nil {
		return nil, err
	}
	scores := make([]float64, len(candidates))
	for i := range candidates {
		scores[i] = cosine(vecs[0], vecs[i+1])
	}
	order := make([]int, len(candidates))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return -cmpFloat(scores[a], scores[b]) })
	out := make([]Message, len(candidates))
	for i, j := range order {
		out[i] = candidates[j]
	}
	return out, nil
}

func cosine(a, b []float64) float64 {
	var dot, na, nb float64
	for i := range min(len(a), len(b)) {
		dot += a[i] * b[i]
		na += a[i] * a[i]
		nb += b[i] * b[i]
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// ModelClient returns the HTTP client for a model server at modelURL: it
// reaches only public addresses and the ranges of allow (the node's
// allow_private_networks), and, when allowPrivate, the addresses the
// URL's host names now (a local Ollama on 127.0.0.1). It follows no
// redirects.
func ModelClient(ctx context.Context, modelURL string, allow []string, allowPrivate bool, timeout time.Duration) (*http.Client, error) {
	u, err := url.Parse(modelURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("assistant model URL %q is not an http(s) URL", modelURL)
	}
	guard, err := netguard.New(allow)
	if err != nil {
		return nil, err
	}
	if allowPrivate {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("assistant model URL: %w", err)
		}
		for _, a := range addrs {
			a = a.Unmap()
			guard.Allow = append(guard.Allow, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return guard.Client(netguard.ClientOptions{Timeout: timeout, MaxRedirects: -1}), nil
}
