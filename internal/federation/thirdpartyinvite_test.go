package federation_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestExchangeThirdPartyInvite: alice on A invited an address by a
// third-party invite (an m.room.third_party_invite event naming an
// identity server's public key); bob's server B, once the identity server
// signed bob's binding, asks A with exchange_third_party_invite to turn it
// into an invite, which A authorises (the signed block against the event's
// public key) and sends to B as any invite: bob is invited on both
// servers. A block signed by another key, a token no event names, an
// inviter of another server and an event that is no invite are refused.
func TestExchangeThirdPartyInvite(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	idPub, idKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := base64.RawStdEncoding.EncodeToString(idPub)
	if _, err := alice.SendStateEvent(ctx, roomID, event.StateThirdPartyInvite, "tok", map[string]any{
		"display_name":     "b...@example.org",
		"key_validity_url": "https://id.example/_matrix/identity/v2/pubkey/isvalid",
		"public_key":       pub,
		"public_keys":      []map[string]any{{"public_key": pub}},
	}); err != nil {
		t.Fatalf("alice sends the third-party invite: %v", err)
	}
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(key ed25519.PrivateKey, mxid id.UserID, token string) map[string]any {
		block := map[string]any{"mxid": mxid, "token": token}
		raw, err := json.Marshal(block)
		if err != nil {
			t.Fatal(err)
		}
		sig := ed25519.Sign(key, canonicaljson.CanonicalJSONAssumeValid(raw))
		block["signatures"] = map[string]any{"id.example": map[string]string{"ed25519:0": base64.RawStdEncoding.EncodeToString(sig)}}
		return block
	}
	invite := func(sender id.UserID, membership string, block map[string]any) map[string]any {
		return map[string]any{
			"type": "m.room.member", "room_id": roomID, "sender": sender, "state_key": bob.UserID,
			"content": map[string]any{"membership": membership, "third_party_invite": map[string]any{
				"display_name": "b...@example.org", "signed": block,
			}},
		}
	}
	exchange := func(body any) error {
		_, _, err := b.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: a.Config.ServerName, Method: http.MethodPut, Authenticate: true, RequestJSON: body,
			Path: federation.URLPath{"v1", "exchange_third_party_invite", string(roomID)},
		})
		return err
	}
	for _, tc := range []struct {
		name    string
		body    any
		status  int
		errcode string
	}{
		{"signed by another key", invite(alice.UserID, "invite", signed(otherKey, bob.UserID, "tok")), 403, "M_FORBIDDEN"},
		{"a token no event names", invite(alice.UserID, "invite", signed(idKey, bob.UserID, "other")), 403, "M_FORBIDDEN"},
		{"an inviter of another server", invite(bob.UserID, "invite", signed(idKey, bob.UserID, "tok")), 403, "M_FORBIDDEN"},
		{"not an invite", invite(alice.UserID, "join", signed(idKey, bob.UserID, "tok")), 400, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRemote(t, exchange(tc.body), tc.status, tc.errcode)
			if m := a.Rooms.Membership(bob.UserID, roomID); m != "" {
				t.Fatalf("bob's membership on A after a refused exchange = %q", m)
			}
		})
	}
	if err := exchange(invite(alice.UserID, "invite", signed(idKey, bob.UserID, "tok"))); err != nil {
		t.Fatalf("exchange_third_party_invite: %v", err)
	}
	if m := a.Rooms.Membership(bob.UserID, roomID); m != "invite" {
		t.Errorf("bob's membership on A = %q, want invite", m)
	}
	if m := b.Rooms.Membership(bob.UserID, roomID); m != "invite" {
		t.Errorf("bob's membership on B = %q, want invite", m)
	}
}
