package oauth

import (
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
)

// The states of a device grant.
const (
	devicePending = iota
	deviceApproved
	deviceDenied
	deviceIssued
)

// deviceGrant is a device authorization grant (RFC 8628): a device that
// waits, polling the token endpoint, while its user approves it on
// another screen by typing the user code.
type deviceGrant struct {
	client   *Client
	scope    grantScope
	userCode string
	status   int
	user     id.UserID
	lastPoll time.Time
	interval time.Duration
}

// userCodeChars are the characters of user codes: capital consonants,
// which neither spell words nor look alike.
const userCodeChars = "BCDFGHJKLMNPQRSTVWXZ"

// normalUserCode is a user code as typed, without its dash, spaces and
// case.
func normalUserCode(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
}

// displayUserCode is how people see a user code: ABCD-EFGH.
func displayUserCode(c string) string {
	if len(c) != 8 {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// postDeviceAuthorization is the device authorization endpoint.
func (s *Service) postDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	c, err := s.parseTokenForm(w, r)
	if err != nil {
		s.writeTokenResult(w, nil, err)
		return
	}
	if !c.allows(grantDeviceCode) {
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", "the client did not register the device code grant")
		return
	}
	scope, err := parseScope(r.PostFormValue("scope"))
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", err.Error())
		return
	}
	deviceCode := accounts.RandomToken("", 32)
	userCode := accounts.RandomString(userCodeChars, 8)
	s.devices.put(deviceCode, &deviceGrant{client: c, scope: scope, userCode: userCode, interval: devicePollInterval})
	s.userCodes.put(userCode, deviceCode)
	verify := s.opts.BaseURL() + pathDevice
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               deviceCode,
		"user_code":                 displayUserCode(userCode),
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + userCode,
		"expires_in":                int(deviceGrantLifetime.Seconds()),
		"interval":                  int(devicePollInterval.Seconds()),
	})
}

// exchangeDeviceCode answers a device's poll: pending (slow_down when it
// polls faster than its interval), denied, or its tokens once approved.
func (s *Service) exchangeDeviceCode(r *http.Request, c *Client) (*tokenResponse, error) {
	deviceCode := r.PostFormValue("device_code")
	if deviceCode == "" {
		return nil, invalidRequest("missing device_code")
	}
	var grant deviceGrant
	found := s.devices.update(deviceCode, func(p **deviceGrant) {
		g := *p
		if g.client.ID != c.ID {
			grant = deviceGrant{status: -1}
			return
		}
		grant = *g
		switch g.status {
		case devicePending:
			now := time.Now()
			if now.Sub(g.lastPoll) < g.interval {
				g.interval += devicePollInterval
				grant.status = -2 // polled too fast
			}
			g.lastPoll = now
		case deviceApproved:
			g.status = deviceIssued
		}
	})
	if !found {
		return nil, &tokenError{http.StatusBadRequest, "expired_token", "the device code is unknown or has expired"}
	}
	switch grant.status {
	case -1:
		return nil, invalidGrant("the device code was issued to another client")
	case -2:
		return nil, &tokenError{http.StatusBadRequest, "slow_down", "polling too fast"}
	case devicePending:
		return nil, &tokenError{http.StatusBadRequest, "authorization_pending", "the user has not answered yet"}
	case deviceDenied:
		s.forgetDeviceGrant(deviceCode, grant.userCode)
		return nil, &tokenError{http.StatusBadRequest, "access_denied", "the user denied access"}
	case deviceIssued:
		return nil, invalidGrant("the device code was already used")
	}
	s.forgetDeviceGrant(deviceCode, grant.userCode)
	return s.issueTokens(r.Context(), c, grant.user, grant.scope, "")
}

func (s *Service) forgetDeviceGrant(deviceCode, userCode string) {
	s.devices.delete(deviceCode)
	s.userCodes.delete(userCode)
}

// pendingDeviceGrant finds the pending grant of a user code, counting the
// lookup as a credential guess (a user code is short).
func (s *Service) pendingDeviceGrant(r *http.Request, userCode string) (string, *deviceGrant, error) {
	if err := s.accounts.AllowGuess(r, ""); err != nil {
		return "", nil, err
	}
	deviceCode, ok := s.userCodes.get(normalUserCode(userCode))
	if !ok {
		return "", nil, nil
	}
	g, ok := s.devices.get(deviceCode)
	if !ok || g.status != devicePending {
		return "", nil, nil
	}
	return deviceCode, g, nil
}

// getDevice is the page where the user types the code a device shows,
// or lands with it from the device's link or QR code.
func (s *Service) getDevice(w http.ResponseWriter, r *http.Request) {
	b, ok := s.requireLogin(w, r)
	if !ok {
		return
	}
	userCode := r.URL.Query().Get("user_code")
	if userCode == "" {
		s.render(w, http.StatusOK, "device", page{Title: "Connect a device", CSRF: b.csrf, User: b.user})
		return
	}
	s.showDeviceConsent(w, r, b, userCode)
}

func (s *Service) showDeviceConsent(w http.ResponseWriter, r *http.Request, b *browserSession, userCode string) {
	_, g, err := s.pendingDeviceGrant(r, userCode)
	if err != nil || g == nil {
		p := page{Title: "Connect a device", CSRF: b.csrf, User: b.user, UserCode: userCode,
			Error: "That code is not valid. Check it and try again, or start again on the device."}
		status := http.StatusBadRequest
		if err != nil {
			status, p.Error = s.pageError(err)
		}
		s.render(w, status, "device", p)
		return
	}
	s.render(w, http.StatusOK, "consent", s.consentPage(b, g.client, g.scope, "", displayUserCode(g.userCode)))
}

// postDevice takes the code form, then the consent form for that code.
func (s *Service) postDevice(w http.ResponseWriter, r *http.Request) {
	b, ok := s.consentForm(w, r, "You were signed out. Sign in and enter the code again.")
	if !ok {
		return
	}
	userCode := trimmed(r, "user_code")
	decision := r.PostFormValue("decision")
	if decision == "" {
		s.showDeviceConsent(w, r, b, userCode)
		return
	}
	deviceCode, g, err := s.pendingDeviceGrant(r, userCode)
	if err != nil || g == nil {
		s.showDeviceConsent(w, r, b, userCode)
		return
	}
	answered := s.devices.update(deviceCode, func(p **deviceGrant) {
		if (*p).status != devicePending {
			return
		}
		(*p).user = b.user
		(*p).status = deviceDenied
		if decision == "allow" {
			(*p).status = deviceApproved
		}
	})
	switch {
	case !answered:
		s.message(w, http.StatusBadRequest, "Code expired", "This code has expired. Start again on the device.")
	case decision == "allow":
		s.message(w, http.StatusOK, "Device connected", "You can return to your device: it is signing in.")
	default:
		s.message(w, http.StatusOK, "Access denied", "The device was not given access to your account.")
	}
}
