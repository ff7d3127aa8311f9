package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	gosync "sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

const (
	// defaultRemoteTimeout bounds the wait for other servers when a
	// /keys/query or /keys/claim gives no timeout (the spec's default).
	defaultRemoteTimeout = 10 * time.Second
	// maxRemoteTimeout caps the timeout a client may ask for.
	maxRemoteTimeout = 60 * time.Second
	// remoteParallelism bounds the servers one request asks at once.
	remoteParallelism = 16
)

// remoteTimeout is the wait for other servers a request asks for (ms).
func remoteTimeout(ms *int64) time.Duration {
	if ms == nil || *ms < 0 {
		return defaultRemoteTimeout
	}
	return min(time.Duration(*ms)*time.Millisecond, maxRemoteTimeout)
}

// failure is the entry of a server in the failures of /keys/query and
// /keys/claim.
func failure(status int, format string, args ...any) map[string]any {
	return map[string]any{"status": status, "message": fmt.Sprintf(format, args...)}
}

// serverFailure describes why a server could not answer.
func serverFailure(err error) map[string]any {
	var httpErr mautrix.HTTPError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return failure(http.StatusGatewayTimeout, "timed out")
	case errors.As(err, &httpErr) && httpErr.Response != nil:
		return failure(httpErr.Response.StatusCode, "the server answered %d", httpErr.Response.StatusCode)
	default:
		return failure(http.StatusServiceUnavailable, "the server could not be reached")
	}
}

// byServer groups the users of a request by their server, leaving out
// this server's and malformed IDs.
func byServer[V any](s *Service, users map[id.UserID]V) map[string]map[id.UserID]V {
	out := map[string]map[id.UserID]V{}
	for user, v := range users {
		_, server, err := user.Parse()
		if err != nil || server == s.accounts.ServerName() {
			continue
		}
		if out[server] == nil {
			out[server] = map[id.UserID]V{}
		}
		out[server][user] = v
	}
	return out
}

// eachServer runs ask for every server in parallel (at most
// remoteParallelism at once) under one deadline, and records the servers
// that failed in failures.
func eachServer[V any](ctx context.Context, servers map[string]map[id.UserID]V, timeout time.Duration, failures map[string]any, ask func(ctx context.Context, server string, users map[id.UserID]V) error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu gosync.Mutex
	var wg gosync.WaitGroup
	sem := make(chan struct{}, remoteParallelism)
	for server, users := range servers {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				failures[server] = serverFailure(ctx.Err())
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			if err := ask(ctx, server, users); err != nil {
				mu.Lock()
				failures[server] = serverFailure(err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// remoteQueryResponse is what /user/keys/query answers.
type remoteQueryResponse struct {
	DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys"`
	SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys"`
}

// queryRemote adds the keys of remote users to resp: from the device
// lists this server tracks where they are current; a tracked list (of a
// user sharing a room with a user here) that is not held yet or stale is
// fetched first (GET /user/devices), so that the answer is the list later
// queries are answered from; what is left is asked of the users' servers
// (in parallel, all within timeout); servers that do not answer are
// recorded in resp.Failures.
func (s *Service) queryRemote(ctx context.Context, want map[id.UserID][]id.DeviceID, timeout time.Duration, resp *queryResponse) error {
	servers := byServer(s, want)
	if len(servers) == 0 {
		return nil
	}
	if s.fed == nil {
		for server := range servers {
			resp.Failures[server] = failure(http.StatusServiceUnavailable, "federation is not enabled on this server")
		}
		return nil
	}
	deadline := time.Now().Add(timeout)
	var tracked []id.UserID
	for _, users := range servers {
		for user, devices := range users {
			ok, err := s.cachedKeys(ctx, user, devices, resp)
			if err != nil {
				return err
			}
			if ok {
				delete(users, user)
			} else if s.sharedWithLocal(ctx, user) {
				tracked = append(tracked, user)
			}
		}
	}
	s.fetchLists(ctx, tracked, deadline)
	for _, user := range tracked {
		_, server, _ := user.Parse()
		ok, err := s.cachedKeys(ctx, user, servers[server][user], resp)
		if err != nil {
			return err
		}
		if ok {
			delete(servers[server], user)
		}
	}
	for server, users := range servers {
		if len(users) == 0 {
			delete(servers, server)
		}
	}
	var mu gosync.Mutex
	eachServer(ctx, servers, time.Until(deadline), resp.Failures, func(ctx context.Context, server string, users map[id.UserID][]id.DeviceID) error {
		var got remoteQueryResponse
		err := s.fed.MakeRequest(ctx, server, true, http.MethodPost, federation.URLPath{"v1", "user", "keys", "query"},
			map[string]any{"device_keys": users}, &got)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		mergeRemoteKeys(users, &got, resp)
		return nil
	})
	return nil
}

// fetchLists fetches the device lists of remote users (GET /user/devices,
// at most resyncParallelism at once) before deadline; a list that cannot
// be fetched is left as it was.
func (s *Service) fetchLists(ctx context.Context, users []id.UserID, deadline time.Time) {
	if len(users) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var wg gosync.WaitGroup
	sem := make(chan struct{}, resyncParallelism)
	for _, user := range users {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := s.Resync(ctx, user); err != nil {
				s.log.Info("fetch remote device list for a query", "user_id", user, "err", err)
			}
		})
	}
	wg.Wait()
}

// mergeRemoteKeys adds to resp what a server answered about the users
// asked of it, leaving out keys that do not belong to the user and device
// they are listed under (a server speaks for its own users only).
func mergeRemoteKeys(asked map[id.UserID][]id.DeviceID, got *remoteQueryResponse, resp *queryResponse) {
	for user := range asked {
		devices := map[id.DeviceID]json.RawMessage{}
		for dev, raw := range got.DeviceKeys[user] {
			if deviceKeysOf(raw, user, dev) {
				devices[dev] = raw
			}
		}
		resp.DeviceKeys[user] = devices
		if raw, ok := got.MasterKeys[user]; ok && crossSigningKeyOf(raw, user) {
			resp.MasterKeys[user] = raw
		}
		if raw, ok := got.SelfSigningKeys[user]; ok && crossSigningKeyOf(raw, user) {
			resp.SelfSigningKeys[user] = raw
		}
	}
}

// deviceKeysOf reports whether raw is a device_keys object of user's
// device dev.
func deviceKeysOf(raw json.RawMessage, user id.UserID, dev id.DeviceID) bool {
	var k struct {
		UserID   id.UserID   `json:"user_id"`
		DeviceID id.DeviceID `json:"device_id"`
	}
	return json.Unmarshal(raw, &k) == nil && k.UserID == user && k.DeviceID == dev
}

// crossSigningKeyOf reports whether raw is a cross-signing key of user.
func crossSigningKeyOf(raw json.RawMessage, user id.UserID) bool {
	var k struct {
		UserID id.UserID `json:"user_id"`
	}
	return json.Unmarshal(raw, &k) == nil && k.UserID == user
}

// claimRemote claims the keys of remote devices from their servers (in
// parallel, within timeout) and adds them to result; servers that do not
// answer are recorded in failures.
func (s *Service) claimRemote(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, timeout time.Duration, result claimedKeys, failures map[string]any) {
	servers := byServer(s, want)
	if len(servers) == 0 {
		return
	}
	if s.fed == nil {
		for server := range servers {
			failures[server] = failure(http.StatusServiceUnavailable, "federation is not enabled on this server")
		}
		return
	}
	var mu gosync.Mutex
	eachServer(ctx, servers, timeout, failures, func(ctx context.Context, server string, users map[id.UserID]map[id.DeviceID]string) error {
		var got struct {
			OneTimeKeys claimedKeys `json:"one_time_keys"`
		}
		err := s.fed.MakeRequest(ctx, server, true, http.MethodPost, federation.URLPath{"v1", "user", "keys", "claim"},
			map[string]any{"one_time_keys": users}, &got)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for user, devices := range users {
			for dev, alg := range devices {
				if key, ok := claimedKeyOf(got.OneTimeKeys[user][dev], alg); ok {
					if result[user] == nil {
						result[user] = map[id.DeviceID]map[string]json.RawMessage{}
					}
					result[user][dev] = key
				}
			}
		}
		return nil
	})
}

// claimedKeyOf returns the one key of algorithm alg a server answered for
// a device, if it answered exactly that.
func claimedKeyOf(keys map[string]json.RawMessage, alg string) (map[string]json.RawMessage, bool) {
	if len(keys) != 1 {
		return nil, false
	}
	for name, raw := range keys {
		if a, _, ok := splitKeyID(name); !ok || a != alg || !validKeyObject(raw) {
			return nil, false
		}
		return map[string]json.RawMessage{name: raw}, true
	}
	return nil, false
}

// remoteMasterKey returns a remote user's master key (by type, as
// crossSigningKeys does), from the cached device list or asked of the
// user's server; none when neither has it.
func (s *Service) remoteMasterKey(ctx context.Context, user id.UserID) (map[string]crossSigningKey, error) {
	q := newQueryResponse()
	if err := s.queryRemote(ctx, map[id.UserID][]id.DeviceID{user: nil}, defaultRemoteTimeout, q); err != nil {
		return nil, err
	}
	out := map[string]crossSigningKey{}
	if raw, ok := q.MasterKeys[user]; ok {
		if k, err := parseCSKey(raw, keyMaster, user); err == nil && k != nil {
			out[keyMaster] = crossSigningKey{Type: keyMaster, PublicKey: k.pub, JSON: string(raw)}
		}
	}
	return out, nil
}

// addViewerSignatures adds to the master keys of remote users in resp the
// signatures viewer made of them (with their user-signing key), which
// only this server holds.
func (s *Service) addViewerSignatures(ctx context.Context, viewer id.UserID, resp *queryResponse) error {
	for user, raw := range resp.MasterKeys {
		if s.isLocal(user) {
			continue
		}
		k, err := parseCSKey(raw, keyMaster, user)
		if err != nil || k == nil {
			continue
		}
		sigs, err := s.storedSigs(ctx, user, viewer)
		if err != nil {
			return err
		}
		if extra := sigs[k.pub]; len(extra) > 0 {
			if resp.MasterKeys[user], err = decorate(string(raw), extra, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
