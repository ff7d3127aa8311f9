package automation

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

const (
	// hookPrefix is the path of incoming webhooks:
	// POST /_matrixos/automation/v1/hooks/{hookId}/{secret}.
	hookPrefix = "/_matrixos/automation/v1/hooks/"
	// maxHookBody bounds an incoming webhook's body.
	maxHookBody = 16 << 10
	// hookRetryMS is when a rate-limited hook may be called again.
	hookRetryMS = 6000
)

func httpRequest(ctx context.Context, url string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "matrixos-automation")
	return req, nil
}

// WebhookPath is the secret path a webhook rule is triggered at.
func WebhookPath(hookID, secret string) string { return hookPrefix + hookID + "/" + secret }

// postHook runs a webhook rule: the path names the hook and carries its
// secret (compared in constant time; a wrong one is answered as an
// unknown hook); the body is a JSON object of at most 16 KiB whose
// "text", when a string, is the rule's {body}. Each hook is rate-limited.
func (s *Service) postHook(w http.ResponseWriter, r *http.Request) (any, error) {
	s.mu.Lock()
	rule := s.hooks[r.PathValue("hookId")]
	s.mu.Unlock()
	if rule == nil || subtle.ConstantTimeCompare([]byte(rule.HookSecret), []byte(r.PathValue("secret"))) != 1 {
		return nil, mxhttp.NotFound("no such webhook")
	}
	if !s.allow("hook\x00"+rule.HookID, hookRate, hookBurst) {
		return nil, mxhttp.LimitExceeded("too many calls of this webhook").With("retry_after_ms", hookRetryMS)
	}
	body, err := mxhttp.ReadBody(r, maxHookBody)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, mxhttp.NotJSON("the body must be a JSON object")
	}
	now := s.now()
	t := trigger{id: "hook@" + randomHex(8), roomID: rule.RoomID, ts: now, content: body}
	var text string
	if json.Unmarshal(obj["text"], &text) == nil {
		content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": text})
		t.content = content
	}
	if !rule.Rule.Conditions.allows("", now) {
		return map[string]bool{"ran": false}, nil
	}
	s.run(r.Context(), rule, t)
	return map[string]bool{"ran": true}, nil
}
