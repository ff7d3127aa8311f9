package pushers

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// NotifyPath is the path every http pusher's URL must have.
const NotifyPath = "/_matrix/push/v1/notify"

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("GET "+v3+"/pushers", s.acc.Auth(s.getPushers))
	mux.HandleFunc("POST "+v3+"/pushers/set", s.acc.Auth(s.setPusher))
	mux.HandleFunc("GET "+v3+"/notifications", s.acc.Auth(s.getNotifications))
}

func (s *Service) getPushers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	list := s.of(sess.UserID)
	if list == nil {
		list = []*Pusher{}
	}
	return map[string]any{"pushers": list}, nil
}

type setRequest struct {
	PushKey           string          `json:"pushkey"`
	Kind              json.RawMessage `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

func (s *Service) setPusher(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req setRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := requireParams(param{"kind", req.Kind == nil}, param{"app_id", req.AppID == ""}, param{"pushkey", req.PushKey == ""}); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(req.AppID) > 64 {
		return nil, mxhttp.InvalidParam("app_id is longer than 64 characters")
	}
	if len(req.PushKey) > 512 {
		return nil, mxhttp.InvalidParam("pushkey is longer than 512 bytes")
	}
	if string(req.Kind) == "null" {
		err := s.remove(r.Context(), sess.UserID, keyed(req.AppID, req.PushKey))
		if err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	}
	var kind string
	if err := json.Unmarshal(req.Kind, &kind); err != nil {
		return nil, mxhttp.BadJSON("kind must be a string or null")
	}
	err := requireParams(
		param{"app_display_name", req.AppDisplayName == ""}, param{"device_display_name", req.DeviceDisplayName == ""},
		param{"lang", req.Lang == ""}, param{"data", req.Data == nil || string(req.Data) == "null"},
	)
	if err != nil {
		return nil, err
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(req.Data, &data); err != nil {
		return nil, mxhttp.BadJSON("data must be an object")
	}
	switch kind {
	case "http":
		if err := checkHTTPData(data); err != nil {
			return nil, err
		}
	case "email":
		return nil, mxhttp.InvalidParam("email pushers are not supported: this server sends no email")
	default:
		return nil, mxhttp.InvalidParam("unknown pusher kind %q", kind)
	}
	p := &Pusher{
		PushKey: req.PushKey, Kind: kind, AppID: req.AppID,
		AppDisplayName: req.AppDisplayName, DeviceDisplayName: req.DeviceDisplayName,
		ProfileTag: req.ProfileTag, Lang: req.Lang, Data: req.Data,
		user: sess.UserID, device: sess.DeviceID, pushkeyTS: time.Now().Unix(),
	}
	if err := s.save(r.Context(), p, req.Append); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

// param is a request field and whether it is missing.
type param struct {
	name  string
	empty bool
}

// requireParams answers M_MISSING_PARAM naming every empty param.
func requireParams(params ...param) error {
	var missing []string
	for _, p := range params {
		if p.empty {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return mxhttp.MissingParam("missing parameters: %s", strings.Join(missing, ", "))
	}
	return nil
}

// checkHTTPData validates an http pusher's data: an http(s) url with the
// notify path, and a known format if any.
func checkHTTPData(data map[string]json.RawMessage) error {
	raw, ok := data["url"]
	if !ok {
		return mxhttp.MissingParam("data.url is required for http pushers")
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return mxhttp.InvalidParam("data.url must be a string")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return mxhttp.InvalidParam("data.url must be an absolute https URL")
	}
	if u.Path != NotifyPath {
		return mxhttp.InvalidParam("data.url must have the path %s", NotifyPath)
	}
	if raw, ok := data["format"]; ok {
		var f string
		if json.Unmarshal(raw, &f) != nil || f != "event_id_only" {
			return mxhttp.InvalidParam("data.format must be event_id_only if given")
		}
	}
	return nil
}
