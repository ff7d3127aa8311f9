package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/netguard"
)

// Limits of outbound federation requests.
const (
	// RequestTimeout bounds a whole request, body included.
	RequestTimeout = 60 * time.Second
	// ConnectTimeout bounds dialling one target and its TLS handshake.
	ConnectTimeout = 10 * time.Second
	// MaxResponseBytes bounds a response body.
	MaxResponseBytes = 16 << 20
	// MaxConnsPerHost bounds the connections open to one server.
	MaxConnsPerHost = 16
)

// transport carries requests for matrix-federation:// URLs (those
// mautrix's federation.Client builds): it resolves the server name as the
// spec says and tries each resolved target in turn, dialling through the
// guard, over TLS that trusts the system's CAs and the extra ones.
// Connections are pooled per Host header: the targets of one resolution.
type transport struct {
	resolve   func(ctx context.Context, serverName string) (*federation.ResolvedServerName, error)
	inner     *http.Transport
	wellKnown *http.Client // fetches /.well-known/matrix/server
}

type targetKey struct{}

func newTransport(guard *netguard.Guard, roots *x509.CertPool, resolver *net.Resolver) *transport {
	t := &transport{}
	t.inner = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			target, ok := ctx.Value(targetKey{}).(string)
			if !ok {
				return nil, errors.New("federation: no resolved target")
			}
			return guard.DialContext(ctx, network, target)
		},
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		MaxIdleConnsPerHost:    4,
		MaxConnsPerHost:        MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    ConnectTimeout,
		ResponseHeaderTimeout:  RequestTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	// .well-known lookups go through the same guard and CAs, without
	// redirects to other schemes.
	t.wellKnown = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            guard.DialContext,
			TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    ConnectTimeout,
			ResponseHeaderTimeout:  ConnectTimeout,
			MaxResponseHeaderBytes: 16 << 10,
		},
		Timeout: 2 * ConnectTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 || req.URL.Scheme != "https" {
				return errors.New("federation: .well-known redirect refused")
			}
			return nil
		},
	}
	cache := federation.NewInMemoryCache()
	opts := &federation.ResolveServerNameOpts{HTTPClient: t.wellKnown, DNSClient: resolver}
	t.resolve = func(ctx context.Context, serverName string) (*federation.ResolvedServerName, error) {
		if res, err := cache.LoadResolution(ctx, serverName); err == nil && res != nil {
			return res, nil
		}
		res, err := federation.ResolveServerName(ctx, serverName, opts)
		if err != nil {
			return nil, err
		}
		cache.StoreResolution(ctx, res)
		return res, nil
	}
	return t
}

// RoundTrip resolves the request's server name and sends it to each
// resolved target until one answers.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "matrix-federation" {
		return nil, fmt.Errorf("federation: unsupported scheme %q", req.URL.Scheme)
	}
	res, err := t.resolve(req.Context(), req.URL.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", req.URL.Host, err)
	}
	var errs []error
	for i, target := range res.IPPort {
		attempt, err := t.attempt(req, res.HostHeader, target, i)
		if err != nil {
			errs = append(errs, err)
			break
		}
		resp, err := t.inner.RoundTrip(attempt)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s via %s: %w", req.URL.Host, target, err))
		if req.Context().Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// attempt returns the request to send to one target: https, the Host
// header (and TLS server name) of the resolution, a fresh body.
func (t *transport) attempt(req *http.Request, host, target string, i int) (*http.Request, error) {
	ctx := context.WithValue(req.Context(), targetKey{}, target)
	r := req.Clone(ctx)
	r.URL.Scheme = "https"
	r.URL.Host = host
	r.Host = host
	hasBody := req.Body != nil && req.Body != http.NoBody
	// mautrix's client sends its JSON bodies without a Content-Type, and
	// servers such as Dendrite refuse those with 400; every federation
	// request body is JSON.
	if hasBody && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if i > 0 && hasBody {
		if req.GetBody == nil {
			return nil, errors.New("federation: request body cannot be sent again")
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	return r, nil
}

// newClient returns a mautrix federation client that signs requests as
// serverName with key and sends them through t.
func newClient(serverName string, key *federation.SigningKey, t *transport, userAgent string) *federation.Client {
	return &federation.Client{
		HTTP: &http.Client{
			Transport: t,
			Timeout:   RequestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // federation does not redirect
			},
		},
		ServerName:        serverName,
		UserAgent:         userAgent,
		Key:               key,
		ResponseSizeLimit: MaxResponseBytes,
		AllowServer:       func(name string) bool { return name != serverName },
	}
}
