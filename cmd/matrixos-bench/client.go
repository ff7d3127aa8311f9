package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// client is a minimal Client-Server API client: just what the scenarios
// need, with nothing from the server's own packages, so the tool runs
// against any homeserver.
type client struct {
	base   string
	hc     *http.Client
	token  string
	userID string
	txn    atomic.Int64
	// retries counts 429 answers that were retried.
	retries *atomic.Int64
}

// apiError is a non-2xx answer.
type apiError struct {
	Status  int
	Errcode string `json:"errcode"`
	Message string `json:"error"`
	Retry   int64  `json:"retry_after_ms"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Errcode, e.Message)
}

// newHTTPClient returns a client whose pool keeps enough idle connections
// for every concurrent long-poll, so no request pays for a new connection.
func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 8192,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr}
}

// do sends one request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard). 429 answers are retried after the
// server's retry_after_ms, within ctx.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	for {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: read body: %w", method, path, err)
		}
		if resp.StatusCode/100 == 2 {
			if out == nil {
				return nil
			}
			if b, ok := out.(*[]byte); ok {
				*b = data
				return nil
			}
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%s %s: decode: %w", method, path, err)
			}
			return nil
		}
		ae := &apiError{Status: resp.StatusCode}
		json.Unmarshal(data, ae)
		if resp.StatusCode == http.StatusTooManyRequests {
			if c.retries != nil && c.retries.Add(1) == 1 {
				fmt.Fprintf(os.Stderr, "matrixos-bench: %s %s was rate-limited (429); figures include the waits — turn the server's rate limits off for benchmarking\n", method, path)
			}
			wait := time.Duration(max(ae.Retry, 50)) * time.Millisecond
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if resp.StatusCode == http.StatusUnauthorized && out != nil {
			// User-interactive auth: hand the 401 body to the caller.
			if uia, ok := out.(*uiaResponse); ok {
				json.Unmarshal(data, uia)
				return errUIA
			}
		}
		return fmt.Errorf("%s %s: %w", method, path, ae)
	}
}

var errUIA = errors.New("user-interactive auth required")

type uiaResponse struct {
	Session     string `json:"session"`
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
}

type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// registerOpen registers localpart with m.login.dummy (open registration).
func (c *client) registerOpen(ctx context.Context, localpart, password string) error {
	req := map[string]any{"username": localpart, "password": password, "initial_device_display_name": "matrixos-bench"}
	var first uiaResponse
	err := c.do(ctx, "POST", "/_matrix/client/v3/register", req, &first)
	if err == nil && first.AccessToken != "" {
		c.token, c.userID = first.AccessToken, first.UserID
		return nil
	}
	if err != nil && !errors.Is(err, errUIA) {
		return fmt.Errorf("register %s: %w", localpart, err)
	}
	req["auth"] = map[string]any{"type": "m.login.dummy", "session": first.Session}
	var lr loginResponse
	if err := c.do(ctx, "POST", "/_matrix/client/v3/register", req, &lr); err != nil {
		return fmt.Errorf("register %s: %w", localpart, err)
	}
	c.token, c.userID = lr.AccessToken, lr.UserID
	return nil
}

// registerShared registers localpart through the Synapse-compatible admin
// API: GET a nonce, then POST with HMAC-SHA1(secret,
// nonce\0user\0password\0notadmin).
func (c *client) registerShared(ctx context.Context, localpart, password, secret string) error {
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := c.do(ctx, "GET", "/_synapse/admin/v1/register", nil, &n); err != nil {
		return fmt.Errorf("registration nonce: %w", err)
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(n.Nonce + "\x00" + localpart + "\x00" + password + "\x00notadmin"))
	req := map[string]any{
		"nonce": n.Nonce, "username": localpart, "password": password, "admin": false,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	}
	var lr loginResponse
	if err := c.do(ctx, "POST", "/_synapse/admin/v1/register", req, &lr); err != nil {
		return fmt.Errorf("register %s: %w", localpart, err)
	}
	c.token, c.userID = lr.AccessToken, lr.UserID
	return nil
}

// createRoom creates a room with a preset and returns its ID.
func (c *client) createRoom(ctx context.Context, preset string) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := c.do(ctx, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": preset}, &out)
	return out.RoomID, err
}

// setState sends a state event with the empty state key.
func (c *client) setState(ctx context.Context, roomID, evType string, content any) error {
	return c.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+url.PathEscape(evType)+"/", content, nil)
}

// join joins a room.
func (c *client) join(ctx context.Context, roomID string) error {
	return c.do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{}, nil)
}

// tagField is the content field that carries a message's bench tag.
const tagField = "org.matrixos.bench.tag"

// send sends an m.room.message carrying tag and returns its event ID.
func (c *client) send(ctx context.Context, roomID, tag string) (string, error) {
	txn := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(c.txn.Add(1), 10)
	var out struct {
		EventID string `json:"event_id"`
	}
	content := map[string]any{"msgtype": "m.text", "body": "bench " + tag, tagField: tag}
	err := c.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn, content, &out)
	return out.EventID, err
}

// syncResponse is the part of a /sync answer the scenarios read.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Type    string `json:"type"`
					EventID string `json:"event_id"`
					Content struct {
						Tag string `json:"org.matrixos.bench.tag"`
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
			Unread struct {
				Notifications int `json:"notification_count"`
			} `json:"unread_notifications"`
		} `json:"join"`
	} `json:"rooms"`
	// size is the body's length in bytes.
	size int
}

// tags returns the bench tags of the timeline events in roomID.
func (s *syncResponse) tags(roomID string) []string {
	var out []string
	for _, ev := range s.Rooms.Join[roomID].Timeline.Events {
		if ev.Content.Tag != "" {
			out = append(out, ev.Content.Tag)
		}
	}
	return out
}

// sync runs one /sync. since "" is an initial sync; filter is inline JSON
// or "".
func (c *client) sync(ctx context.Context, since string, timeout time.Duration, filter string) (*syncResponse, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	if filter != "" {
		q.Set("filter", filter)
	}
	var raw []byte
	if err := c.do(ctx, "GET", "/_matrix/client/v3/sync?"+q.Encode(), nil, &raw); err != nil {
		return nil, err
	}
	out := &syncResponse{size: len(raw)}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("decode sync: %w", err)
	}
	return out, nil
}

// versions asks /_matrix/client/versions once.
func versions(ctx context.Context, hc *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/_matrix/client/versions", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("versions: HTTP %d", resp.StatusCode)
	}
	return nil
}
