package federation

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/netguard"
)

// TestTransportTriesEveryTarget: when the first target a server name
// resolves to refuses connections, the request goes to the next one, body
// and all; when every target fails, the error names each.
func TestTransportTriesEveryTarget(t *testing.T) {
	var bodies atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64)
		n, _ := r.Body.Read(b)
		bodies.Store(string(b[:n]))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"server":{"name":"stub","version":"1"}}`))
	}))
	defer srv.Close()
	closed := closedPort(t)
	tr := tlsTransport(t, srv)
	targets := map[string][]string{
		"good.example": {closed, srv.Listener.Addr().String()},
		"bad.example":  {closed, closed},
	}
	tr.resolve = func(ctx context.Context, name string) (*federation.ResolvedServerName, error) {
		// The stub's certificate is for 127.0.0.1 and example.com; the Host
		// header and TLS name follow the resolution. Connections are pooled
		// per Host header, so each name gets its own.
		host := map[string]string{"good.example": "127.0.0.1", "bad.example": "example.com"}[name]
		return &federation.ResolvedServerName{ServerName: name, HostHeader: host, IPPort: targets[name]}, nil
	}
	client := newClient("me.example", federation.GenerateSigningKey(), tr, "test")

	resp, err := client.Version(context.Background(), "good.example")
	if err != nil || resp.Server.Name != "stub" {
		t.Fatalf("version through the second target: %+v, %v", resp, err)
	}
	var out map[string]any
	if _, _, err := client.MakeFullRequest(context.Background(), federation.RequestParams{
		ServerName: "good.example", Method: "POST", Path: federation.URLPath{"v1", "x"},
		RequestJSON: map[string]string{"a": "b"}, ResponseJSON: &out, Authenticate: true,
	}); err != nil {
		t.Fatalf("POST through the second target: %v", err)
	}
	if got := bodies.Load(); got != `{"a":"b"}` {
		t.Fatalf("body at the second target: %q", got)
	}
	_, err = client.Version(context.Background(), "bad.example")
	if err == nil || strings.Count(err.Error(), "via "+closed) != 2 {
		t.Fatalf("every target down: %v", err)
	}

	// The guard still applies to every target.
	strict := newTransport(&netguard.Guard{}, tr.inner.TLSClientConfig.RootCAs, nil)
	strict.resolve = tr.resolve
	_, err = newClient("me.example", federation.GenerateSigningKey(), strict, "test").Version(context.Background(), "good.example")
	if !errors.Is(err, netguard.ErrForbidden) {
		t.Fatalf("loopback target without allow_private_networks: %v", err)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestTransportSendsJSONContentType: a request with a body goes out as
// application/json (mautrix sets no Content-Type, and Dendrite refuses a
// body without one); one without a body gets none.
func TestTransportSendsJSONContentType(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Content-Type"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	tr := tlsTransport(t, srv)
	tr.resolve = func(ctx context.Context, name string) (*federation.ResolvedServerName, error) {
		return &federation.ResolvedServerName{ServerName: name, HostHeader: "127.0.0.1", IPPort: []string{srv.Listener.Addr().String()}}, nil
	}
	client := newClient("me.example", federation.GenerateSigningKey(), tr, "test")
	for _, tc := range []struct {
		method string
		body   any
		want   string
	}{
		{"POST", map[string]string{"a": "b"}, "application/json"},
		{"PUT", map[string]any{}, "application/json"},
		{"GET", nil, ""},
	} {
		var out map[string]any
		if _, _, err := client.MakeFullRequest(context.Background(), federation.RequestParams{
			ServerName: "stub.example", Method: tc.method, Path: federation.URLPath{"v1", "x"},
			RequestJSON: tc.body, ResponseJSON: &out, Authenticate: true,
		}); err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		if ct := got.Load(); ct != tc.want {
			t.Errorf("%s with body %v: Content-Type %q, want %q", tc.method, tc.body, ct, tc.want)
		}
	}
}
