package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/config"
)

// startSlowBodyNode starts a node whose request bodies get one second,
// plus one second per 10 KiB received.
func startSlowBodyNode(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ServerName = "localhost"
	cfg.OpenRegistration = true
	cfg.RateLimit = false
	cfg.LogLevel = "error"
	n, err := New(context.Background(), cfg, NewLogger(cfg, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	n.bodyStartTimeout, n.bodyMinRate = time.Second, 10<<10
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return "http://" + n.Addr
}

// TestSlowBodiesTimeOut: clients on loopback that dribble a request body a
// byte at a time are cut off once the body deadline passes (they used to
// hold their connections forever), while a body arriving slowly but
// steadily over longer than the initial deadline and a long-polling /sync
// longer than it still work.
func TestSlowBodiesTimeOut(t *testing.T) {
	base := startSlowBodyNode(t)
	addr := strings.TrimPrefix(base, "http://")

	const dribblers = 20
	var wg sync.WaitGroup
	errs := make(chan error, dribblers)
	start := time.Now()
	for range dribblers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- dribble(addr)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dribbling clients held on for %v", d)
	}

	// A steady body: 40 KiB in 10 KiB pieces over about 2.1 seconds.
	pr, pw := io.Pipe()
	go func() {
		body := fmt.Sprintf(`{"username":"steady","password":"supersecret","auth":{"type":"m.login.dummy"},"pad":"%s"}`, strings.Repeat("x", 40<<10))
		for i := 0; i < len(body); i += 10 << 10 {
			if _, err := pw.Write([]byte(body[i:min(i+10<<10, len(body))])); err != nil {
				return
			}
			time.Sleep(700 * time.Millisecond)
		}
		pw.Close()
	}()
	resp, err := http.Post(base+"/_matrix/client/v3/register", "application/json", pr)
	if err != nil {
		t.Fatalf("steady body: %v", err)
	}
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("steady body: %s %v", resp.Status, err)
	}

	// A long-poll longer than the body deadline.
	get := func(url string) (map[string]any, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+reg.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s", resp.Status)
		}
		return out, json.NewDecoder(resp.Body).Decode(&out)
	}
	first, err := get(base + "/_matrix/client/v3/sync")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	polled := time.Now()
	if _, err := get(fmt.Sprintf("%s/_matrix/client/v3/sync?timeout=2500&since=%v", base, first["next_batch"])); err != nil {
		t.Fatalf("long-poll sync: %v", err)
	}
	if d := time.Since(polled); d < 2*time.Second {
		t.Errorf("long-poll returned after %v, want about 2.5s", d)
	}
}

// dribble sends a request whose body comes a byte every 200ms and returns
// nil when the server ends the exchange (an answer or a closed
// connection) within 5 seconds.
func dribble(addr string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /_matrix/client/v3/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("a dribbling client was still connected after 5s")
		}
		return nil // the server closed the connection
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return fmt.Errorf("a dribbled body was accepted: %s", resp.Status)
	}
	return nil
}
