package netguard

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// MaxRedirects is how many redirects a guarded client follows.
const MaxRedirects = 5

// ClientOptions tune a guarded HTTP client.
type ClientOptions struct {
	// Timeout bounds a whole request, redirects and body included
	// (default 10s).
	Timeout time.Duration
	// MaxRedirects bounds the redirects followed (default MaxRedirects;
	// negative: none).
	MaxRedirects int
}

// Client returns an HTTP client that reaches only addresses the guard
// allows: every connection, including those for redirects, is dialled
// through DialContext; proxies from the environment are ignored (they
// would dial for us); only http and https URLs are followed.
func (g *Guard) Client(opts ClientOptions) *http.Client {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxRedirects == 0 {
		opts.MaxRedirects = MaxRedirects
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           32,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        60 * time.Second,
		TLSHandshakeTimeout:    opts.Timeout,
		ResponseHeaderTimeout:  opts.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	maxRedirects := opts.MaxRedirects
	return &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return CheckURLScheme(req.URL.Scheme)
		},
	}
}

// ErrScheme is returned for URLs that are not http or https.
var ErrScheme = errors.New("only http and https URLs may be fetched")

// CheckURLScheme returns ErrScheme unless scheme is http or https.
func CheckURLScheme(scheme string) error {
	if scheme != "http" && scheme != "https" {
		return fmt.Errorf("%w (got %q)", ErrScheme, scheme)
	}
	return nil
}
