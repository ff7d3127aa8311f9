package oauth

import (
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
)

// The Matrix scopes (spec section "Scope"), stable and as MSC2967 first
// named them (clients still send those).
const (
	scopeAPI                  = "urn:matrix:client:api:*"
	scopeDevicePrefix         = "urn:matrix:client:device:"
	unstableScopeAPI          = "urn:matrix:org.matrix.msc2967.client:api:*"
	unstableScopeDevicePrefix = "urn:matrix:org.matrix.msc2967.client:device:"
	scopeOpenID               = "openid"
)

// grantScope is what a client asked for and gets.
type grantScope struct {
	// granted are the scope tokens granted, in the client's spelling.
	granted []string
	// device is the device the session uses: the one the client named,
	// or a new one.
	device id.DeviceID
}

// String is the granted scope as the token endpoint returns it.
func (g grantScope) String() string { return strings.Join(g.granted, " ") }

// parseScope reads a space-separated scope. It must ask for the client
// API; it may name a device, whose ID must be made of unreserved URI
// characters; without one, a device ID is made. Unknown scope tokens are
// left out of the grant.
func parseScope(scope string) (grantScope, error) {
	var g grantScope
	api := false
	for _, tok := range strings.Fields(scope) {
		switch {
		case tok == scopeAPI || tok == unstableScopeAPI:
			api = true
		case strings.HasPrefix(tok, scopeDevicePrefix) || strings.HasPrefix(tok, unstableScopeDevicePrefix):
			dev := strings.TrimPrefix(strings.TrimPrefix(tok, scopeDevicePrefix), unstableScopeDevicePrefix)
			if g.device != "" {
				return g, fmt.Errorf("more than one device scope")
			}
			if !validDeviceID(dev) {
				return g, fmt.Errorf("the device ID must be 1 to 255 unreserved characters (A-Z a-z 0-9 - . _ ~)")
			}
			g.device = id.DeviceID(dev)
		case tok == scopeOpenID:
		default:
			continue
		}
		if !slices.Contains(g.granted, tok) {
			g.granted = append(g.granted, tok)
		}
	}
	if !api {
		return g, fmt.Errorf("the scope must include %s", scopeAPI)
	}
	if g.device == "" {
		g.device = id.DeviceID(newDeviceID())
		g.granted = append(g.granted, scopeDevicePrefix+string(g.device))
	}
	return g, nil
}

func validDeviceID(dev string) bool {
	if dev == "" || len(dev) > 255 {
		return false
	}
	for _, c := range dev {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return true
}

// newDeviceID makes a device ID of ten capital letters, as accounts does.
func newDeviceID() string {
	return accounts.RandomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}
