package accounts

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// User-Interactive Authentication stage types.
const (
	StagePassword          = "m.login.password"
	StageDummy             = "m.login.dummy"
	StageRegistrationToken = "m.login.registration_token"
	// StageOAuth is approval through the OAuth account management page
	// (spec v1.17), for the sessions of the OAuth 2.0 API.
	StageOAuth = "m.oauth"
	// StageOAuthUnstable is m.oauth's name before spec v1.17
	// (org.matrix.cross_signing_reset, as Matrix Authentication Service
	// offers it), which clients released before then know. Once the user
	// approved, they retry with only the session.
	StageOAuthUnstable = "org.matrix.cross_signing_reset"
)

const uiaSessionLifetime = 15 * time.Minute

type uiaSession struct {
	// mu serialises requests on one session; finished is set once a
	// flow completed, so the session authorises exactly one request.
	mu        sync.Mutex
	finished  bool
	completed []string
	created   time.Time
	// pinned binds the session to what it was started for, so a session
	// completed for one request cannot authorise a different one.
	pinned string
	token  string    // registration token used, counted on completion
	user   id.UserID // user proven by the password stage
}

type uiaStore struct {
	mu       sync.Mutex
	sessions map[string]*uiaSession
	swept    time.Time // last sweep of expired sessions
}

func newUIAStore() *uiaStore { return &uiaStore{sessions: map[string]*uiaSession{}} }

func (u *uiaStore) get(id string) *uiaSession {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.sessions[id]
	if s != nil && time.Since(s.created) > uiaSessionLifetime {
		delete(u.sessions, id)
		return nil
	}
	return s
}

func (u *uiaStore) create(pinned string) (string, *uiaSession) {
	u.mu.Lock()
	defer u.mu.Unlock()
	// Sweep expired sessions now and then (at most once a minute, so many
	// live sessions do not make every create a full scan); under a flood,
	// start over.
	if now := time.Now(); len(u.sessions) >= 10000 && now.Sub(u.swept) > time.Minute {
		u.swept = now
		for k, s := range u.sessions {
			if now.Sub(s.created) > uiaSessionLifetime {
				delete(u.sessions, k)
			}
		}
	}
	if len(u.sessions) > 100000 {
		clear(u.sessions)
	}
	sid := RandomToken("", 18)
	s := &uiaSession{created: time.Now(), pinned: pinned}
	u.sessions[sid] = s
	return sid, s
}

func (u *uiaStore) remove(id string) {
	u.mu.Lock()
	delete(u.sessions, id)
	u.mu.Unlock()
}

// uiaRequired is the 401 response that tells the client which stages to do.
type uiaRequired struct {
	Flows     []uiaFlow      `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed,omitempty"`
	ErrCode   string         `json:"errcode,omitempty"`
	ErrMsg    string         `json:"error,omitempty"`
}

type uiaFlow struct {
	Stages []string `json:"stages"`
}

func (e *uiaRequired) Error() string     { return "user-interactive authentication required" }
func (e *uiaRequired) HTTPStatus() int   { return http.StatusUnauthorized }
func (e *uiaRequired) ResponseBody() any { return e }

// AuthDict is the "auth" object of a UIA request.
type AuthDict struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	Token      string          `json:"token"`
	User       string          `json:"user"`
	Identifier json.RawMessage `json:"identifier"`
}

// uia runs one round of User-Interactive Authentication. flows lists the
// acceptable stage sequences. pinned identifies the request (method, path,
// user) so a session cannot be replayed for another. It returns nil when a
// flow is complete, or the 401 response to send.
func (s *Service) interactiveAuth(r *http.Request, auth *AuthDict, flows [][]string, pinned string, user id.UserID) (*uiaSession, error) {
	return s.interactiveAuthParams(r, auth, flows, map[string]any{}, pinned, user)
}

// interactiveAuthParams is interactiveAuth with the params the 401 gives
// the stages.
func (s *Service) interactiveAuthParams(r *http.Request, auth *AuthDict, flows [][]string, params map[string]any, pinned string, user id.UserID) (*uiaSession, error) {
	resp := &uiaRequired{Params: params}
	for _, f := range flows {
		resp.Flows = append(resp.Flows, uiaFlow{Stages: f})
	}
	var sess *uiaSession
	sid := ""
	if auth != nil && auth.Session != "" {
		sid = auth.Session
		sess = s.uia.get(sid)
		if sess != nil && sess.pinned != pinned {
			return nil, mxhttp.Forbidden("UIA session was started for a different request")
		}
	}
	if sess == nil {
		sid, sess = s.uia.create(pinned)
	}
	resp.Session = sid
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.finished {
		return nil, mxhttp.Forbidden("UIA session was already used")
	}
	if auth != nil && auth.Type != "" {
		if err := s.doStage(r, auth, sess, user); err != nil {
			me, _ := mxhttp.AsError(err)
			if me.Status == http.StatusTooManyRequests {
				return nil, err // not a failed stage: the client is to wait
			}
			if errors.Is(err, errNotYourself) {
				// Not a failed stage either: no password of another user can ever
				// authorise this request, so it is refused outright (403), as
				// Synapse does and Complement's TestDeviceManagement expects.
				return nil, err
			}
			resp.ErrCode, resp.ErrMsg = me.Code, me.Message
		} else if !slices.Contains(sess.completed, auth.Type) {
			sess.completed = append(sess.completed, auth.Type)
		}
	}
	for _, f := range flows {
		done := true
		for _, st := range f {
			if !slices.Contains(sess.completed, st) {
				done = false
				break
			}
		}
		if done {
			sess.finished = true
			s.uia.remove(sid)
			return sess, nil
		}
	}
	resp.Completed = slices.Clone(sess.completed)
	return nil, resp
}

// errNotYourself refuses a logged-in user's request authenticated as another user.
var errNotYourself = mxhttp.Forbidden("can only authenticate as yourself")

func (s *Service) doStage(r *http.Request, auth *AuthDict, sess *uiaSession, user id.UserID) error {
	switch auth.Type {
	case StageDummy:
		return nil
	case StagePassword:
		if user != "" && auth.User == "" && (len(auth.Identifier) == 0 || string(auth.Identifier) == "null") {
			// Re-authenticating a logged-in user: the identifier may be left out.
			a := *auth
			a.User = string(user)
			auth = &a
		}
		uid, err := s.identifierUser(auth)
		if err != nil {
			return err
		}
		if user != "" && uid != user {
			return errNotYourself
		}
		if sess.user != "" && sess.user != uid {
			return mxhttp.Forbidden("UIA session belongs to another user")
		}
		if _, err := s.checkPassword(r, uid, auth.Password); err != nil {
			return err
		}
		sess.user = uid
		return nil
	case StageRegistrationToken:
		if err := s.allowGuess(r, ""); err != nil {
			return err
		}
		ok, err := s.ValidRegistrationToken(r.Context(), auth.Token)
		if err != nil {
			return err
		}
		if !ok {
			return mxhttp.Unauthorized("invalid registration token")
		}
		sess.token = auth.Token
		return nil
	case StageOAuth, StageOAuthUnstable:
		if user == "" || s.OAuth == nil || !s.OAuth.CrossSigningResetApproved(user) {
			return mxhttp.Forbidden("the action has not been approved on the account page yet")
		}
		return nil
	}
	return mxhttp.Unrecognized("unsupported authentication type %q", auth.Type)
}
