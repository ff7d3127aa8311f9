package appservice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// The third-party lookups (GET /_matrix/client/v3/thirdparty/...) are
// forwarded to the appservices that registered the protocol (the reverse
// lookups, by Matrix alias or user ID, to every appservice with
// protocols), all at once; the answers are merged, and an appservice that
// fails or answers something else than the spec's shape is left out.

func (s *Service) thirdPartyRoutes(mux *http.ServeMux, auth func(accounts.AuthedHandler) http.HandlerFunc) {
	const tp = "/_matrix/client/v3/thirdparty"
	mux.HandleFunc("GET "+tp+"/protocols", auth(s.getProtocols))
	mux.HandleFunc("GET "+tp+"/protocol/{protocol}", auth(s.getProtocol))
	mux.HandleFunc("GET "+tp+"/location/{protocol}", auth(s.getLookup("location")))
	mux.HandleFunc("GET "+tp+"/user/{protocol}", auth(s.getLookup("user")))
	mux.HandleFunc("GET "+tp+"/location", auth(s.getReverseLookup("location", "alias")))
	mux.HandleFunc("GET "+tp+"/user", auth(s.getReverseLookup("user", "userid")))
}

// withProtocol lists the registrations with a url that registered
// protocol ("" for any protocol).
func (s *Service) withProtocol(protocol string) []*Registration {
	var out []*Registration
	for _, reg := range s.Registry.All() {
		if reg.URL != "" && len(reg.Protocols) > 0 && (protocol == "" || slices.Contains(reg.Protocols, protocol)) {
			out = append(out, reg)
		}
	}
	return out
}

// askAll sends the GET to each registration at once and returns the
// bodies of the 200 answers, in registration order (nil for the others).
func (s *Service) askAll(ctx context.Context, regs []*Registration, path string, query url.Values) [][]byte {
	bodies := make([][]byte, len(regs))
	var wg sync.WaitGroup
	for i, reg := range regs {
		wg.Go(func() {
			status, body, err := s.call(ctx, reg, http.MethodGet, path, query, nil)
			if err != nil {
				s.log.Warn("appservice third-party lookup failed", "appservice", reg.ID, "path", path, "err", err)
				return
			}
			if status == http.StatusOK {
				bodies[i] = body
			}
		})
	}
	wg.Wait()
	return bodies
}

// protocolMetadata asks the appservices of protocol for its metadata and
// merges their answers: the first one's fields, with the instances of all,
// each given an instance_id naming its appservice and network. ok is false
// when none answered.
func (s *Service) protocolMetadata(ctx context.Context, protocol string) (map[string]any, bool) {
	regs := s.withProtocol(protocol)
	bodies := s.askAll(ctx, regs, "/_matrix/app/v1/thirdparty/protocol/"+url.PathEscape(protocol), nil)
	var merged map[string]any
	instances := []any{}
	for i, body := range bodies {
		var meta map[string]any
		if body == nil || json.Unmarshal(body, &meta) != nil || meta == nil {
			continue
		}
		if list, ok := meta["instances"].([]any); ok {
			for _, in := range list {
				instance, ok := in.(map[string]any)
				if !ok {
					continue
				}
				if network, ok := instance["network_id"].(string); ok {
					instance["instance_id"] = InstanceID(regs[i].ID, network)
				}
				instances = append(instances, instance)
			}
		}
		if merged == nil {
			merged = meta
		}
	}
	if merged == nil {
		return nil, false
	}
	merged["instances"] = instances
	return merged, true
}

func (s *Service) getProtocols(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var protocols []string
	for _, reg := range s.withProtocol("") {
		for _, p := range reg.Protocols {
			if !slices.Contains(protocols, p) {
				protocols = append(protocols, p)
			}
		}
	}
	out := map[string]any{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range protocols {
		wg.Go(func() {
			if meta, ok := s.protocolMetadata(r.Context(), p); ok {
				mu.Lock()
				out[p] = meta
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out, nil
}

func (s *Service) getProtocol(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	protocol := r.PathValue("protocol")
	meta, ok := s.protocolMetadata(r.Context(), protocol)
	if !ok {
		return nil, mxhttp.NotFound("no application service provides the protocol %q", protocol)
	}
	return meta, nil
}

// getLookup serves GET /thirdparty/location/{protocol} and /user/{protocol}:
// the fields in the query go to the protocol's appservices, and the
// answers are concatenated.
func (s *Service) getLookup(kind string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		protocol := r.PathValue("protocol")
		regs := s.withProtocol(protocol)
		if len(regs) == 0 {
			return nil, mxhttp.NotFound("no application service provides the protocol %q", protocol)
		}
		path := "/_matrix/app/v1/thirdparty/" + kind + "/" + url.PathEscape(protocol)
		return concatLists(s.askAll(r.Context(), regs, path, lookupFields(r.URL.Query()))), nil
	}
}

// lookupFields is the query of a lookup without what authenticates the
// caller (an access token, an appservice's asserted identity), which is
// never passed on to an appservice.
func lookupFields(q url.Values) url.Values {
	fields := url.Values{}
	for k, v := range q {
		switch k {
		case "access_token", "user_id", "device_id", "org.matrix.msc3202.device_id":
			continue
		}
		fields[k] = v
	}
	return fields
}

// getReverseLookup serves GET /thirdparty/location?alias= and
// /thirdparty/user?userid=, asking every appservice with protocols.
func (s *Service) getReverseLookup(kind, param string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		value := r.URL.Query().Get(param)
		if value == "" {
			return nil, mxhttp.MissingParam("missing %s", param)
		}
		bodies := s.askAll(r.Context(), s.withProtocol(""), "/_matrix/app/v1/thirdparty/"+kind, url.Values{param: {value}})
		return concatLists(bodies), nil
	}
}

// concatLists joins JSON arrays of objects, leaving out bodies that are not
// one.
func concatLists(bodies [][]byte) []map[string]any {
	out := []map[string]any{}
	for _, body := range bodies {
		var list []map[string]any
		if body != nil && json.Unmarshal(body, &list) == nil {
			for _, item := range list {
				if item != nil {
					out = append(out, item)
				}
			}
		}
	}
	return out
}
