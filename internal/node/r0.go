package node

import (
	"net/http"
	"strings"
)

const (
	r0Prefix = "/_matrix/client/r0/"
	v3Prefix = "/_matrix/client/v3/"
)

// r0Endpoints are the client-server endpoints of spec r0.6.1, relative to
// /_matrix/client/r0. /versions advertises r0.6.1, and older clients (and
// sytest-era tests) still call these paths; each is served by the v3
// endpoint that replaced it. Endpoints added after r0.6.1 have no r0 path.
var r0Endpoints = []string{
	"GET /login", "POST /login", "POST /logout", "POST /logout/all",
	"GET /login/sso/redirect",
	"POST /register", "GET /register/available",
	"POST /register/email/requestToken", "POST /register/msisdn/requestToken",
	"POST /account/password", "POST /account/deactivate",
	"POST /account/password/email/requestToken", "POST /account/password/msisdn/requestToken",
	"GET /account/3pid", "POST /account/3pid", "POST /account/3pid/add", "POST /account/3pid/bind",
	"POST /account/3pid/delete", "POST /account/3pid/unbind",
	"POST /account/3pid/email/requestToken", "POST /account/3pid/msisdn/requestToken",
	"GET /account/whoami", "GET /capabilities",
	"POST /user/{userId}/filter", "GET /user/{userId}/filter/{filterId}",
	"GET /sync", "GET /events", "GET /initialSync", "GET /events/{eventId}",
	"GET /rooms/{roomId}/initialSync",
	"GET /rooms/{roomId}/event/{eventId}", "GET /rooms/{roomId}/state",
	"GET /rooms/{roomId}/state/{eventType}/{stateKey...}", "PUT /rooms/{roomId}/state/{eventType}/{stateKey...}",
	"GET /rooms/{roomId}/members", "GET /rooms/{roomId}/joined_members", "GET /rooms/{roomId}/messages",
	"PUT /rooms/{roomId}/send/{eventType}/{txnId}", "PUT /rooms/{roomId}/redact/{eventId}/{txnId}",
	"POST /createRoom",
	"GET /directory/room/{roomAlias}", "PUT /directory/room/{roomAlias}", "DELETE /directory/room/{roomAlias}",
	"GET /joined_rooms", "POST /join/{roomIdOrAlias}",
	"POST /rooms/{roomId}/invite", "POST /rooms/{roomId}/join", "POST /rooms/{roomId}/leave",
	"POST /rooms/{roomId}/forget", "POST /rooms/{roomId}/kick", "POST /rooms/{roomId}/ban",
	"POST /rooms/{roomId}/unban",
	"GET /directory/list/room/{roomId}", "PUT /directory/list/room/{roomId}",
	"GET /publicRooms", "POST /publicRooms",
	"POST /user_directory/search",
	"GET /profile/{userId}", "GET /profile/{userId}/displayname", "PUT /profile/{userId}/displayname",
	"GET /profile/{userId}/avatar_url", "PUT /profile/{userId}/avatar_url",
	"GET /voip/turnServer",
	"PUT /rooms/{roomId}/typing/{userId}",
	"POST /rooms/{roomId}/receipt/{receiptType}/{eventId}", "POST /rooms/{roomId}/read_markers",
	"GET /presence/{userId}/status", "PUT /presence/{userId}/status",
	"PUT /sendToDevice/{eventType}/{txnId}",
	"GET /devices", "GET /devices/{deviceId}", "PUT /devices/{deviceId}", "DELETE /devices/{deviceId}",
	"POST /delete_devices",
	"POST /keys/upload", "POST /keys/query", "POST /keys/claim", "GET /keys/changes",
	"GET /pushers", "POST /pushers/set", "GET /notifications",
	"GET /pushrules/{rest...}", "PUT /pushrules/{rest...}", "DELETE /pushrules/{rest...}",
	"POST /search", "GET /rooms/{roomId}/context/{eventId}",
	"GET /user/{userId}/rooms/{roomId}/tags", "PUT /user/{userId}/rooms/{roomId}/tags/{tag}",
	"DELETE /user/{userId}/rooms/{roomId}/tags/{tag}",
	"GET /user/{userId}/account_data/{type}", "PUT /user/{userId}/account_data/{type}",
	"GET /user/{userId}/rooms/{roomId}/account_data/{type}", "PUT /user/{userId}/rooms/{roomId}/account_data/{type}",
	"GET /admin/whois/{userId}", "POST /rooms/{roomId}/report/{eventId}",
	"GET /thirdparty/protocols", "GET /thirdparty/protocol/{protocol}",
	"GET /thirdparty/location/{protocol}", "GET /thirdparty/user/{protocol}",
	"GET /thirdparty/location", "GET /thirdparty/user",
	"POST /user/{userId}/openid/request_token", "POST /rooms/{roomId}/upgrade",
}

// r0Aliases serves the r0.6.1 paths of r0Endpoints as their v3
// equivalents by rewriting the request's path before next sees it; any
// other r0 path goes on unchanged (and is unrecognised).
func r0Aliases(next http.Handler) http.Handler {
	known := http.NewServeMux()
	for _, e := range r0Endpoints {
		method, path, _ := strings.Cut(e, " ")
		known.Handle(method+" "+strings.TrimSuffix(r0Prefix, "/")+path, next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, r0Prefix) {
			if _, pattern := known.Handler(r); pattern != "" {
				r = r.Clone(r.Context())
				r.URL.Path = v3Prefix + strings.TrimPrefix(r.URL.Path, r0Prefix)
				if r.URL.RawPath != "" {
					r.URL.RawPath = v3Prefix + strings.TrimPrefix(r.URL.RawPath, r0Prefix)
				}
				r.RequestURI = r.URL.RequestURI()
			}
		}
		if stateWithoutKey(r) {
			// The empty state key without its slash, as clients send it
			// too: served by the one route (and its guards and limits),
			// not redirected (a redirected PUT loses its body in some
			// clients).
			r = r.Clone(r.Context())
			r.URL.Path += "/"
			if r.URL.RawPath != "" {
				r.URL.RawPath += "/"
			}
			r.RequestURI = r.URL.RequestURI()
		}
		next.ServeHTTP(w, r)
	})
}

// stateWithoutKey reports whether r is a GET or PUT of
// /_matrix/client/v3/rooms/{roomId}/state/{eventType}: a state event with
// the empty state key, named without the trailing slash.
func stateWithoutKey(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPut {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), v3Prefix+"rooms/")
	if !ok {
		return false
	}
	parts := strings.Split(rest, "/")
	return len(parts) == 3 && parts[0] != "" && parts[1] == "state" && parts[2] != ""
}
