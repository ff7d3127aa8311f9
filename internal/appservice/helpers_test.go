package appservice_test

import (
	"testing"

	mauas "maunium.net/go/mautrix/appservice"
)

// registration is a mautrix registration of an appservice at url that
// watches the users matching userRegex.
func registration(asID, url, userRegex string) *mauas.Registration {
	reg := mauas.CreateRegistration()
	reg.ID, reg.URL, reg.SenderLocalpart = asID, url, asID+"bot"
	reg.Namespaces.UserIDs = mauas.NamespaceList{{Regex: userRegex, Exclusive: false}}
	return reg
}

// yamlOf is the registration file of reg.
func yamlOf(t *testing.T, reg *mauas.Registration) string {
	t.Helper()
	y, err := reg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return y
}
