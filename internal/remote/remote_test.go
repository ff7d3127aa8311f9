package remote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

func TestError(t *testing.T) {
	answered := func(status int, resp *mautrix.RespError) error {
		return fmt.Errorf("query: %w", mautrix.HTTPError{Response: &http.Response{StatusCode: status}, RespError: resp})
	}
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"remote 404 with errcode", answered(404, &mautrix.RespError{ErrCode: "M_NOT_FOUND", Err: "User does not exist."}), 404, "M_NOT_FOUND"},
		{"remote 404 without body", answered(404, nil), 404, "M_NOT_FOUND"},
		{"remote 403", answered(403, &mautrix.RespError{ErrCode: "M_FORBIDDEN", Err: "no"}), 403, "M_FORBIDDEN"},
		{"remote 500", answered(500, &mautrix.RespError{ErrCode: "M_UNKNOWN", Err: "boom"}), 502, "M_UNKNOWN"},
		{"remote 400", answered(400, &mautrix.RespError{ErrCode: "M_INVALID_PARAM", Err: "?"}), 502, "M_UNKNOWN"},
		{"unreachable", mautrix.HTTPError{Message: "request error", WrappedError: errors.New("connection refused")}, 502, "M_UNKNOWN"},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), 504, "M_UNKNOWN"},
		{"our own check", mxhttp.InvalidParam("bad"), 400, "M_INVALID_PARAM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := errors.AsType[*mxhttp.Error](Error("remote.example", tt.err))
			if !ok || got.Status != tt.status || got.Code != tt.code {
				t.Fatalf("Error(%v) = %+v; want %d %s", tt.err, got, tt.status, tt.code)
			}
		})
	}
	if Error("remote.example", nil) != nil {
		t.Fatal("Error(nil) is not nil")
	}
}

// TestCacheSharesOneFetch: concurrent misses of one key make one fetch,
// and the answer is kept for the next Get.
func TestCacheSharesOneFetch(t *testing.T) {
	c := NewCache[string, int](time.Minute, 10)
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(ctx context.Context) (int, error) {
		fetches.Add(1)
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	results := make([]int, 8)
	for i := range results {
		wg.Go(func() {
			v, err := c.Get(context.Background(), "k", time.Second, fetch)
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	// Every caller is waiting on the one fetch before it may finish.
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for _, v := range results {
		if v != 42 {
			t.Fatalf("results %v", results)
		}
	}
	if v, _ := c.Get(context.Background(), "k", time.Second, fetch); v != 42 || fetches.Load() != 1 {
		t.Fatalf("second Get: %d after %d fetches; want 42 after 1", v, fetches.Load())
	}
}

// TestCacheKeepsAnswersNotFailures: a remote 404 is kept until it
// expires; a failure to reach the server is fetched again at once.
func TestCacheKeepsAnswersNotFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewCache[string, int](time.Minute, 10)
	c.now = func() time.Time { return now }
	var fetches int
	failWith := func(err error) func(context.Context) (int, error) {
		return func(context.Context) (int, error) { fetches++; return 0, err }
	}
	ctx := context.Background()
	notFound := Error("r", mautrix.HTTPError{Response: &http.Response{StatusCode: 404}})
	for range 2 {
		if _, err := c.Get(ctx, "missing", time.Second, failWith(notFound)); !IsNotFound(err) {
			t.Fatalf("Get: %v; want 404", err)
		}
	}
	if fetches != 1 {
		t.Fatalf("a kept 404 was fetched %d times", fetches)
	}
	now = now.Add(2 * time.Minute)
	c.Get(ctx, "missing", time.Second, failWith(notFound))
	if fetches != 2 {
		t.Fatalf("an expired 404 was not fetched again (%d fetches)", fetches)
	}
	unreachable := BadGateway("r could not be reached")
	for range 2 {
		c.Get(ctx, "down", time.Second, failWith(unreachable))
	}
	if fetches != 4 {
		t.Fatalf("a failure was kept: %d fetches, want 4", fetches)
	}
}

// TestCacheCallerCancel: a caller that goes away returns at once while
// the fetch it started goes on for the others.
func TestCacheCallerCancel(t *testing.T) {
	c := NewCache[string, int](time.Minute, 10)
	release := make(chan struct{})
	fetch := func(ctx context.Context) (int, error) {
		select {
		case <-release:
			return 7, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "k", time.Minute, fetch); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get: %v", err)
	}
	close(release)
	if v, err := c.Get(context.Background(), "k", time.Minute, fetch); v != 7 || err != nil {
		t.Fatalf("Get after a cancelled caller: %d, %v", v, err)
	}
}

// TestCacheBounded: the cache holds at most max answers.
func TestCacheBounded(t *testing.T) {
	c := NewCache[int, int](time.Minute, 4)
	for i := range 20 {
		c.Get(context.Background(), i, time.Second, func(context.Context) (int, error) { return i, nil })
	}
	if n := len(c.entries); n > 4 {
		t.Fatalf("%d entries kept, max 4", n)
	}
}
