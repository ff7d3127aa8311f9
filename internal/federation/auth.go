package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// MaxRequestBytes bounds the body of an authenticated federation request
// (a transaction of 50 PDUs of 64 KiB and 100 EDUs fits).
const MaxRequestBytes = 8 << 20

type originKey struct{}

// Origin returns the server that signed an authenticated request (see
// Authenticate), or "".
func Origin(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}

// signedRequest is the JSON object an X-Matrix signature covers.
type signedRequest struct {
	Method      string          `json:"method"`
	URI         string          `json:"uri"`
	Origin      string          `json:"origin"`
	Destination string          `json:"destination"`
	Content     json.RawMessage `json:"content,omitempty"`
}

// Authenticate wraps a federation endpoint: the request must carry an
// X-Matrix Authorization header for this server, signed by the origin
// with a key the KeyRing finds valid now. Otherwise it is answered with
// 401 M_UNAUTHORIZED (400 M_NOT_JSON for a body that is not JSON).
// The handler finds the origin with Origin.
func (s *Service) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, body, err := s.authenticate(r)
		if err != nil {
			mxhttp.WriteError(w, r, err)
			return
		}
		if s.Outbox != nil {
			s.Outbox.Wake(origin)
		}
		r = r.WithContext(context.WithValue(r.Context(), originKey{}, origin))
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate checks r's X-Matrix signature and returns its origin and
// the body it read.
func (s *Service) authenticate(r *http.Request) (string, []byte, error) {
	header := r.Header.Get("Authorization")
	scheme, params, _ := strings.Cut(header, " ")
	if header == "" {
		return "", nil, mxhttp.Unauthorized("missing X-Matrix Authorization header")
	}
	if scheme != "X-Matrix" {
		return "", nil, mxhttp.Unauthorized("the Authorization header is not X-Matrix")
	}
	auth := federation.ParseXMatrixAuth("X-Matrix " + params)
	if auth.Origin == "" || auth.KeyID == "" || auth.Signature == "" {
		return "", nil, mxhttp.Unauthorized("the X-Matrix header lacks origin, key or sig")
	}
	if config.ValidServerName(auth.Origin) != nil {
		return "", nil, mxhttp.Unauthorized("the X-Matrix origin is not a server name")
	}
	if auth.Destination != "" && auth.Destination != s.serverName {
		return "", nil, mxhttp.Unauthorized("the X-Matrix destination is not this server")
	}
	if auth.Origin == s.serverName {
		return "", nil, mxhttp.Unauthorized("requests from this server's own name are not accepted")
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := mxhttp.ReadBody(r, MaxRequestBytes)
		if err != nil {
			return "", nil, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if !json.Valid(b) {
				return "", nil, mxhttp.NotJSON("request body is not valid JSON")
			}
			body = b
		}
	}
	key, err := s.Keys.VerifyKey(r.Context(), auth.Origin, auth.KeyID, s.Keys.now())
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return "", nil, err
		}
		s.log.Debug("X-Matrix key lookup failed", "origin", auth.Origin, "key_id", auth.KeyID, "err", err)
		return "", nil, mxhttp.Unauthorized("no valid key %s of %s", auth.KeyID, auth.Origin)
	}
	uri := r.RequestURI // as sent, which is what the origin signed
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	message, err := canonicaljson.Marshal(signedRequest{
		Method:      r.Method,
		URI:         uri,
		Origin:      auth.Origin,
		Destination: s.serverName,
		Content:     body,
	})
	if err != nil {
		return "", nil, mxhttp.BadJSON("request body cannot be canonicalised: %v", err)
	}
	if err := signutil.VerifyJSONCanonical(key, auth.Signature, message); err != nil {
		return "", nil, mxhttp.Unauthorized("the X-Matrix signature does not verify")
	}
	return auth.Origin, body, nil
}
