// Package openaifake is an OpenAI-compatible model server for tests: it
// speaks the real API's shape for POST /v1/chat/completions (a JSON
// answer, or server-sent events when the request asks for a stream) and
// POST /v1/embeddings, answers errors as the API does
// ({"error": {"message", "type", "code"}}), and can be made slow.
package openaifake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Request is a chat completion request the fake received.
type Request struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Authorization string `json:"-"`
}

// Prompt is the content of the request's last message.
func (r Request) Prompt() string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Content
}

// Server is a running fake.
type Server struct {
	*httptest.Server
	// URL is the API's base URL (".../v1").
	URL string

	mu       sync.Mutex
	reply    func(Request) string
	embed    func(string) []float64
	fail     int // status to answer with, 0: none
	failMsg  string
	delay    time.Duration
	requests []Request
}

// Start runs a fake that answers every chat with reply(request) and
// embeds each input with embed (nil: a vector of letter counts); it
// stops when the test ends.
func Start(t interface{ Cleanup(func()) }, reply func(Request) string, embed func(string) []float64) *Server {
	s := &Server{reply: reply, embed: embed}
	if s.embed == nil {
		s.embed = LetterCounts
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("POST /v1/embeddings", s.embeddings)
	s.Server = httptest.NewServer(mux)
	s.URL = s.Server.URL + "/v1"
	t.Cleanup(s.Close)
	return s
}

// Fail makes the fake answer every request with status and an error
// JSON carrying message (status 0: answer normally again).
func (s *Server) Fail(status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failMsg = status, message
}

// Delay makes the fake wait d before answering.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns the chat requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// LetterCounts embeds text as the counts of the letters a to z.
func LetterCounts(text string) []float64 {
	v := make([]float64, 26)
	for _, r := range strings.ToLower(text) {
		if r >= 'a' && r <= 'z' {
			v[r-'a']++
		}
	}
	return v
}

// before applies the delay and the failure; it reports whether the
// request was answered already.
func (s *Server) before(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	delay, fail, msg := s.delay, s.fail, s.failMsg
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return true
		}
	}
	if fail != 0 {
		writeError(w, fail, msg)
		return true
	}
	return false
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "code": nil}})
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" || len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "model and messages are required")
		return
	}
	req.Authorization = r.Header.Get("Authorization")
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	if s.before(w, r) {
		return
	}
	text := s.reply(req)
	created := time.Now().Unix()
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": text}}},
			"usage": map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	flusher, _ := w.(http.Flusher)
	for i, word := range strings.SplitAfter(text, " ") {
		delta := map[string]any{"content": word}
		if i == 0 {
			delta["role"] = "assistant"
		}
		chunk, _ := json.Marshal(map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
			"model": req.Model, "choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": nil}}})
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		if flusher != nil {
			flusher.Flush()
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
		writeError(w, http.StatusBadRequest, "model and input are required")
		return
	}
	if s.before(w, r) {
		return
	}
	data := make([]any, len(req.Input))
	for i, in := range req.Input {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": s.embed(in)}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
}
