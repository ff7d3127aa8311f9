package appservice_test

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestDeviceManagement: with io.element.msc4190 an appservice creates its
// users' devices with PUT /devices/{deviceId}, acts as them with
// device_id, and deletes them without UIA (as mautrix bridgev2 does);
// without it, neither.
func TestDeviceManagement(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ghost := id.UserID("@bridge_dev:localhost")
		registerGhost(t, asClient(t, n, "as-bridge", ""), "bridge_dev")

		c := asClient(t, n, "as-bridge", ghost)
		if err := c.CreateDeviceMSC4190(t.Context(), "BRIDGEDEV", "bridge device"); err != nil {
			t.Fatalf("create the device: %v", err)
		}
		resp, err := c.Whoami(t.Context())
		if err != nil || resp.UserID != ghost || resp.DeviceID != "BRIDGEDEV" {
			t.Fatalf("whoami with device_id: %+v %v", resp, err)
		}
		dev, err := c.GetDeviceInfo(t.Context(), "BRIDGEDEV")
		if err != nil || dev.DisplayName != "bridge device" {
			t.Fatalf("the device: %+v %v", dev, err)
		}
		// Creating it again changes nothing but the name.
		testnode.Call(t, asClient(t, n, "as-bridge", ""), "PUT", testnode.V3+"/devices/BRIDGEDEV?user_id="+string(ghost),
			map[string]any{"display_name": "renamed"}).Want(t, http.StatusOK, "")

		// Deleting needs no UIA.
		if err := c.DeleteDevice(t.Context(), "BRIDGEDEV", &mautrix.ReqDeleteDevice[any]{}); err != nil {
			t.Fatalf("delete without UIA: %v", err)
		}
		_, err = c.Whoami(t.Context())
		testnode.WantErr(t, err, "M_UNKNOWN_DEVICE", http.StatusBadRequest)

		// An appservice without MSC4190 gets the ordinary behaviour.
		registerGhost(t, asClient(t, n, "as-plain", ""), "plain_dev")
		plain := asClient(t, n, "as-plain", "@plain_dev:localhost")
		err = plain.CreateDeviceMSC4190(t.Context(), "PLAINDEV", "x")
		testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
	}, withRegistration("bridge.yaml", registrationYAML("bridge", "", "io.element.msc4190: true\n")),
		withRegistration("plain.yaml", registrationYAML("plain", "", "")))
}
