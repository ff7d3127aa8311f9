package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Requests to appservices go to the url of their registration, loopback and
// private addresses included (the administrator chose it); unlike the
// node's other outbound requests they do not pass through netguard. Each
// request is bounded in time and each answer in size.
const (
	// maxQueryAnswerBytes bounds an appservice's answer to a query or ping.
	maxQueryAnswerBytes = 1 << 20
	// dialTimeout bounds connecting to an appservice.
	dialTimeout = 5 * time.Second
)

func newClient() *http.Client {
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSHandshakeTimeout:   dialTimeout,
		ResponseHeaderTimeout: requestTimeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   requestTimeout,
		// An appservice has no reason to redirect the homeserver.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Errors of requests to appservices, as the client ping endpoint answers
// them (spec: POST /_matrix/client/v1/appservice/{appserviceId}/ping).
var (
	errURLNotSet = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_URL_NOT_SET", Message: "application service has no url configured"}
)

func connectionFailed(err error) *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusBadGateway, Code: "M_CONNECTION_FAILED", Message: fmt.Sprintf("connection to the application service failed: %v", err)}
}

func connectionTimeout() *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusGatewayTimeout, Code: "M_CONNECTION_TIMEOUT", Message: "connection to the application service timed out"}
}

// badStatus is an appservice's answer with a status other than 200.
func badStatus(status int, body []byte) *mxhttp.Error {
	e := &mxhttp.Error{Status: http.StatusBadGateway, Code: "M_BAD_STATUS", Message: fmt.Sprintf("application service answered status %d", status)}
	return e.With("status", status).With("body", string(body))
}

// call makes a request to the appservice at path (below its url) with its
// hs_token, sends body as JSON unless nil, and returns the answer's status
// and body. A network failure or time-out is an *mxhttp.Error
// (M_CONNECTION_FAILED, M_CONNECTION_TIMEOUT); an answer of any status is
// not an error.
func (s *Service) call(ctx context.Context, reg *Registration, method, path string, query url.Values, body any) (int, []byte, error) {
	if reg.URL == "" {
		return 0, nil, errURLNotSet
	}
	u := reg.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode request to appservice %s: %w", reg.ID, err)
		}
		reader = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, reader)
	if err != nil {
		return 0, nil, fmt.Errorf("request to appservice %s: %w", reg.ID, err)
	}
	req.Header.Set("Authorization", "Bearer "+reg.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxQueryAnswerBytes+1))
	if err != nil {
		return 0, nil, transportError(err)
	}
	if len(b) > maxQueryAnswerBytes {
		return 0, nil, connectionFailed(fmt.Errorf("answer larger than %d bytes", maxQueryAnswerBytes))
	}
	return resp.StatusCode, b, nil
}

// transportError tells a time-out from another failure.
func transportError(err error) *mxhttp.Error {
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return connectionTimeout()
	}
	return connectionFailed(err)
}
