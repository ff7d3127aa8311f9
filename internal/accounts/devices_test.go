package accounts_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func deviceIDs(t *testing.T, c *mautrix.Client) []id.DeviceID {
	t.Helper()
	res, err := c.GetDevicesInfo(context.Background())
	if err != nil {
		t.Fatalf("list devices: %v", err)
	}
	var out []id.DeviceID
	for _, d := range res.Devices {
		out = append(out, d.DeviceID)
	}
	slices.Sort(out)
	return out
}

func TestDevices(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		phone := n.Login(alice.UserID)
		want := []id.DeviceID{alice.DeviceID, phone.DeviceID}
		slices.Sort(want)
		if got := deviceIDs(t, alice); !slices.Equal(got, want) {
			t.Fatalf("devices = %v, want %v", got, want)
		}
		wantOK(t, n.Do(t, "GET", "/_matrix/client/v3/devices", alice.AccessToken, nil))

		// Get and rename.
		if err := alice.SetDeviceInfo(ctx, phone.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "Alice's phone"}); err != nil {
			t.Fatal(err)
		}
		info, err := alice.GetDeviceInfo(ctx, phone.DeviceID)
		if err != nil || info.DisplayName != "Alice's phone" || info.DeviceID != phone.DeviceID {
			t.Fatalf("device after rename: %+v, %v", info, err)
		}
		wantOK(t, n.Do(t, "GET", "/_matrix/client/v3/devices/"+string(phone.DeviceID), alice.AccessToken, nil))
		// A body without display_name changes nothing.
		wantOK(t, n.Do(t, "PUT", "/_matrix/client/v3/devices/"+string(phone.DeviceID), alice.AccessToken, map[string]any{}))
		if info, _ := alice.GetDeviceInfo(ctx, phone.DeviceID); info.DisplayName != "Alice's phone" {
			t.Fatalf("empty PUT changed the name to %q", info.DisplayName)
		}
		wantErr(t, n.Do(t, "GET", "/_matrix/client/v3/devices/NOSUCH", alice.AccessToken, nil), http.StatusNotFound, "M_NOT_FOUND")
		wantErr(t, n.Do(t, "PUT", "/_matrix/client/v3/devices/NOSUCH", alice.AccessToken, map[string]any{"display_name": "x"}), http.StatusNotFound, "M_NOT_FOUND")
		// Other users' devices are invisible.
		bob := n.Register("bob")
		wantErr(t, n.Do(t, "GET", "/_matrix/client/v3/devices/"+string(phone.DeviceID), bob.AccessToken, nil), http.StatusNotFound, "M_NOT_FOUND")

		// Delete with UIA: first a 401 with the password flow.
		path := "/_matrix/client/v3/devices/" + string(phone.DeviceID)
		sess, m := uiaSession(t, n, "DELETE", path, alice.AccessToken, map[string]any{})
		if !slices.EqualFunc(flowsOf(t, m), [][]string{{"m.login.password"}}, slices.Equal) {
			t.Fatalf("delete device flows: %s", m)
		}
		// A wrong password keeps the session open and says why.
		r := n.Do(t, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(string(alice.UserID), "wrong", sess)})
		if r.Status != http.StatusUnauthorized || r.JSON(t)["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("wrong password: %d %s", r.Status, r.Body)
		}
		// Another user's password is refused outright (Complement's
		// TestDeviceManagement/DELETE_/device/{deviceId}_requires_UI_auth_user_to_match_device_owner).
		wantErr(t, n.Do(t, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(string(bob.UserID), testnode.Password, sess)}),
			http.StatusForbidden, "M_FORBIDDEN")
		if got := deviceIDs(t, alice); len(got) != 2 {
			t.Fatalf("devices after bob's password = %v, want both still there", got)
		}
		// The session cannot be used for another request.
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/delete_devices", alice.AccessToken,
			map[string]any{"devices": []string{string(phone.DeviceID)}, "auth": passwordAuth(string(alice.UserID), testnode.Password, sess)}),
			http.StatusForbidden, "M_FORBIDDEN")
		wantOK(t, n.Do(t, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(string(alice.UserID), testnode.Password, sess)}))
		_, err = phone.Whoami(ctx)
		mxErr(t, err, "M_UNKNOWN_TOKEN")
		if got := deviceIDs(t, alice); !slices.Equal(got, []id.DeviceID{alice.DeviceID}) {
			t.Fatalf("devices after delete = %v", got)
		}
		// Deleting a device that is gone succeeds; the identifier may be
		// left out when re-authenticating.
		sess, _ = uiaSession(t, n, "DELETE", path, alice.AccessToken, nil)
		wantOK(t, n.Do(t, "DELETE", path, alice.AccessToken, map[string]any{"auth": map[string]any{"type": "m.login.password", "password": testnode.Password, "session": sess}}))

		// Through the client.
		tablet := n.Login(alice.UserID)
		err = alice.DeleteDevice(ctx, tablet.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: passwordAuth(string(alice.UserID), testnode.Password, "")})
		if err != nil {
			t.Fatalf("delete device with auth: %v", err)
		}

		// delete_devices.
		d1, d2 := n.Login(alice.UserID), n.Login(alice.UserID)
		body := map[string]any{"devices": []id.DeviceID{d1.DeviceID, d2.DeviceID}}
		sess, _ = uiaSession(t, n, "POST", "/_matrix/client/v3/delete_devices", alice.AccessToken, body)
		body["auth"] = passwordAuth(alice.UserID.Localpart(), testnode.Password, sess)
		wantOK(t, n.Do(t, "POST", "/_matrix/client/v3/delete_devices", alice.AccessToken, body))
		if got := deviceIDs(t, alice); !slices.Equal(got, []id.DeviceID{alice.DeviceID}) {
			t.Fatalf("devices after delete_devices = %v", got)
		}
		for _, c := range []*mautrix.Client{d1, d2} {
			_, err := c.Whoami(ctx)
			mxErr(t, err, "M_UNKNOWN_TOKEN")
		}
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/delete_devices", alice.AccessToken, map[string]any{}), http.StatusBadRequest, "M_MISSING_PARAM")
		wantErr(t, n.Do(t, "POST", "/_matrix/client/v3/delete_devices", alice.AccessToken, map[string]any{"devices": "ABC"}), http.StatusBadRequest, "M_BAD_JSON")
		wantErr(t, n.Do(t, "GET", "/_matrix/client/v3/devices", "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
	})
}

// TestDeviceLastSeen checks that using a device records when and from where:
// clients' session lists and the account page show it as the session's last
// activity. Before, a device's last_seen_ts stayed its creation time and
// last_seen_ip stayed empty however long it was used.
func TestDeviceLastSeen(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	phone := n.Login(alice.UserID)
	before, err := alice.GetDeviceInfo(ctx, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	// The phone's own request is what marks it seen.
	if _, err := phone.Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := alice.GetDeviceInfo(ctx, phone.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if after.LastSeenIP != "127.0.0.1" {
		t.Errorf("last_seen_ip = %q after the device's request, want 127.0.0.1", after.LastSeenIP)
	}
	if after.LastSeenTS < before.LastSeenTS {
		t.Errorf("last_seen_ts went back: %d, then %d", before.LastSeenTS, after.LastSeenTS)
	}
}
