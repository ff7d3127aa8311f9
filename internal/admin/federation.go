package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Destination is what the admin API shows of one server the outbound
// federation queue delivers to, in the fields of Synapse's federation
// destinations API plus the queue's own.
type Destination struct {
	Destination string `json:"destination"`
	// RetryLastTS is when the last failed transaction was tried (0 when
	// the destination is not failing), RetryInterval the backoff (ms)
	// after it, FailureTS when it started failing.
	RetryLastTS   int64  `json:"retry_last_ts"`
	RetryInterval int64  `json:"retry_interval"`
	FailureTS     *int64 `json:"failure_ts"`
	// LastSuccessTS is when it last accepted a transaction (0 if never).
	LastSuccessTS int64 `json:"last_success_ts"`
	QueueDepth    int   `json:"queue_depth"`
	Failures      int   `json:"failures"`
	Down          bool  `json:"down"`
}

// FederationAdmin is what the admin API needs from the outbound federation
// queue.
type FederationAdmin interface {
	// Destinations lists the destinations, by name.
	Destinations() []Destination
	// ResetBackoff forgets a destination's failures and retries it now;
	// false for an unknown destination.
	ResetBackoff(ctx context.Context, destination string) (bool, error)
}

var errNoFederation = &mxhttp.Error{Status: http.StatusNotFound, Code: "M_NOT_FOUND", Message: "federation is off on this node"}

func (s *Service) federationRoutes(mux *http.ServeMux) {
	const v1 = "/_synapse/admin/v1/federation/destinations"
	mux.HandleFunc("GET "+v1, s.admin(s.listDestinations))
	mux.HandleFunc("GET "+v1+"/{destination}", s.admin(s.getDestination))
	mux.HandleFunc("POST "+v1+"/{destination}/reset_connection", s.admin(s.resetDestination))
}

// listDestinations is GET /_synapse/admin/v1/federation/destinations, with
// Synapse's from, limit and destination (a substring filter) parameters.
func (s *Service) listDestinations(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if s.Federation == nil {
		return nil, errNoFederation
	}
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	var all []Destination
	for _, d := range s.Federation.Destinations() {
		if name := r.URL.Query().Get("destination"); name == "" || strings.Contains(d.Destination, name) {
			all = append(all, d)
		}
	}
	shown := []Destination{}
	if from < len(all) {
		shown = all[from:min(len(all), from+limit)]
	}
	out := map[string]any{"destinations": shown, "total": len(all)}
	if from+len(shown) < len(all) {
		out["next_token"] = strconv.Itoa(from + len(shown))
	}
	return out, nil
}

// getDestination is GET /_synapse/admin/v1/federation/destinations/{destination}.
func (s *Service) getDestination(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if s.Federation == nil {
		return nil, errNoFederation
	}
	name := r.PathValue("destination")
	for _, d := range s.Federation.Destinations() {
		if d.Destination == name {
			return d, nil
		}
	}
	return nil, mxhttp.NotFound("unknown destination %s", name)
}

// resetDestination is POST .../{destination}/reset_connection: the
// destination's backoff is forgotten and its queue retried now.
func (s *Service) resetDestination(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if s.Federation == nil {
		return nil, errNoFederation
	}
	name := r.PathValue("destination")
	ok, err := s.Federation.ResetBackoff(r.Context(), name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("unknown destination %s", name)
	}
	return mxhttp.Empty, nil
}
