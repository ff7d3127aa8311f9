package oauth

import (
	"context"
	"net/http"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"
)

// accountView is what the account page shows.
type accountView struct {
	DisplayName string
	Sessions    []sessionView
	// Focus is the session an org.matrix.device_view or device_delete
	// action asked about.
	Focus    *sessionView
	Action   string
	Password bool // the account has a password to confirm deactivation with
}

// sessionView is one session (device) in the list.
type sessionView struct {
	DeviceID id.DeviceID
	Name     string
	Client   string
	LastSeen string
}

// getAccount is the account management page (account_management_uri):
// profile, sessions, deactivation. The spec's action and device_id
// parameters pick what it shows first.
func (s *Service) getAccount(w http.ResponseWriter, r *http.Request) {
	b, ok := s.requireLogin(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	view := &accountView{Action: r.URL.Query().Get("action")}
	view.DisplayName, _ = s.accounts.DisplayName(ctx, b.user)
	devs, err := s.accounts.Devices(ctx, b.user)
	if err != nil {
		s.pageFailure(w, err)
		return
	}
	clients, err := s.sessionClients(ctx, b.user)
	if err != nil {
		s.pageFailure(w, err)
		return
	}
	for _, d := range devs {
		v := sessionView{DeviceID: d.DeviceID, Client: clients[d.DeviceID], LastSeen: "never"}
		if d.DisplayName != nil {
			v.Name = *d.DisplayName
		}
		if d.LastSeenTS > 0 {
			v.LastSeen = time.UnixMilli(d.LastSeenTS).UTC().Format("2 Jan 2006 15:04 UTC")
		}
		view.Sessions = append(view.Sessions, v)
	}
	if dev := id.DeviceID(r.URL.Query().Get("device_id")); dev != "" {
		if i := slices.IndexFunc(view.Sessions, func(v sessionView) bool { return v.DeviceID == dev }); i >= 0 {
			view.Focus = &view.Sessions[i]
		}
	}
	u, _, err := s.accounts.GetUser(ctx, b.user)
	if err != nil {
		s.pageFailure(w, err)
		return
	}
	view.Password = u != nil && u.PasswordHash != ""
	p := page{Title: "Your account", CSRF: b.csrf, User: b.user, Account: view, Notice: accountNotices[r.URL.Query().Get("done")]}
	s.render(w, http.StatusOK, "account", p)
}

// pageFailure shows an error that is no fault of the user.
func (s *Service) pageFailure(w http.ResponseWriter, err error) {
	status, msg := s.pageError(err)
	s.message(w, status, "Something went wrong", msg)
}

// accountNotices are the notices the account page shows after a change,
// by the key accountDone passes (the page never shows text from the URL).
var accountNotices = map[string]string{
	"profile": "Profile saved.",
	"session": "Session ended.",
}

// accountDone sends the browser back to the account page with a notice.
func accountDone(w http.ResponseWriter, r *http.Request, notice string) {
	redirect(w, r, pathAccount+"?done="+notice)
}

func (s *Service) postProfile(w http.ResponseWriter, r *http.Request) {
	b, ok := s.loggedInForm(w, r)
	if !ok {
		return
	}
	name := trimmed(r, "displayname")
	if len(name) > 256 {
		s.message(w, http.StatusBadRequest, "Name too long", "A display name can be at most 256 characters.")
		return
	}
	if err := s.accounts.SetProfileField(r.Context(), b.user, "displayname", name); err != nil {
		s.pageFailure(w, err)
		return
	}
	accountDone(w, r, "profile")
}

func (s *Service) postEndSession(w http.ResponseWriter, r *http.Request) {
	b, ok := s.loggedInForm(w, r)
	if !ok {
		return
	}
	dev := id.DeviceID(r.PostFormValue("device_id"))
	if dev == "" {
		s.message(w, http.StatusBadRequest, "No session", "No session was chosen.")
		return
	}
	if err := s.accounts.DeleteDevice(r.Context(), b.user, dev); err != nil {
		s.pageFailure(w, err)
		return
	}
	accountDone(w, r, "session")
}

func (s *Service) postDeactivate(w http.ResponseWriter, r *http.Request) {
	b, ok := s.loggedInForm(w, r)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.message(w, http.StatusBadRequest, "Not confirmed", "Tick the box to confirm that you want to deactivate your account.")
		return
	}
	u, _, err := s.accounts.GetUser(r.Context(), b.user)
	if err != nil {
		s.pageFailure(w, err)
		return
	}
	if u != nil && u.PasswordHash != "" {
		if _, err := s.accounts.CheckLogin(r, string(b.user), r.PostFormValue("password")); err != nil {
			status, msg := s.pageError(err)
			s.message(w, status, "Not deactivated", msg)
			return
		}
	}
	if err := s.accounts.Deactivate(r.Context(), b.user, false); err != nil {
		s.pageFailure(w, err)
		return
	}
	s.OnDeactivated(r.Context(), b.user)
	s.endBrowserSession(w, b)
	s.message(w, http.StatusOK, "Account deactivated", "Your account has been deactivated and all its sessions ended.")
}

// actionCrossSigningReset is the account management action that
// approves a cross-signing reset (the m.oauth UIA stage).
const actionCrossSigningReset = "org.matrix.cross_signing_reset"

// crossSigningResetWindow is how long an approved reset waits for the
// client to retry its key upload.
const crossSigningResetWindow = 10 * time.Minute

// IsOAuthSession reports whether the device is an OAuth session (for
// accounts' m.oauth stage).
func (s *Service) IsOAuthSession(ctx context.Context, uid id.UserID, dev id.DeviceID) (bool, error) {
	clientID, _, err := s.sessionOf(ctx, uid, dev)
	return clientID != "", err
}

// CrossSigningResetURL is the account page that approves a reset.
func (s *Service) CrossSigningResetURL() string {
	return s.opts.BaseURL() + pathAccount + "?action=" + actionCrossSigningReset
}

// CrossSigningResetApproved reports, once, whether the user approved a
// cross-signing reset in the last crossSigningResetWindow.
func (s *Service) CrossSigningResetApproved(uid id.UserID) bool {
	_, ok := s.resets.take(string(uid))
	return ok
}

// postCrossSigningReset approves a reset of the user's cross-signing keys
// for the next few minutes.
func (s *Service) postCrossSigningReset(w http.ResponseWriter, r *http.Request) {
	b, ok := s.loggedInForm(w, r)
	if !ok {
		return
	}
	s.resets.put(string(b.user), struct{}{})
	s.log.Info("cross-signing reset approved", "user_id", b.user)
	s.message(w, http.StatusOK, "Reset approved",
		"Go back to your app to finish resetting your identity. The approval lasts 10 minutes.")
}
