//go:build goolm

package assistant_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAssistantLimitsRequests: the requests of one user past their rate
// (or the queue's bound) are refused, their sender told so once, while
// another user is still answered.
func TestAssistantLimitsRequests(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := plainRoom(t, alice, event.HistoryVisibilityShared)
	testnode.Invite(t, alice, room, bob.UserID)
	testnode.Join(t, bob, room)

	asked := map[id.EventID]bool{}
	const requests = 24 // past assistant.DefaultUserRate's burst
	for i := range requests {
		asked[testnode.SendText(t, alice, room, fmt.Sprintf("!assistant language hello my friend, this is number %d", i))] = true
	}
	if got := ask(t, bob, room, "!assistant language good morning to all of you"); !strings.Contains(got, "English") {
		t.Errorf("bob, within his rate, is answered: %s", got)
	}
	var answered, refusals int
	testnode.WaitFor(t, 30*time.Second, "the notice that alice's requests are refused", func() bool {
		answered, refusals = 0, 0
		for _, msg := range assistantNotices(t, alice, room) {
			switch {
			case !asked[msg.RelatesTo.GetReplyTo()]:
			case strings.HasPrefix(msg.Body, "Not now: "):
				refusals++
			default:
				answered++
			}
		}
		return refusals > 0
	})
	if refusals != 1 || answered >= requests {
		t.Errorf("%d of alice's %d requests answered, %d refusal notices; want fewer answered and 1 notice", answered, requests, refusals)
	}
}

// TestAssistantDeclinesRemoteInvites: the assistant declines the invite
// of another server's user (assistant_remote_invites is off by default).
func TestAssistantDeclinesRemoteInvites(t *testing.T) {
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca, testnode.WithAssistant)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	bob := b.Register("bob")
	bot := id.NewUserID(assistant.Localpart, a.Config.ServerName)
	room := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	testnode.Invite(t, bob, room, bot)
	testnode.WaitFor(t, 30*time.Second, fmt.Sprintf("%s's rejection of the invite", bot), func() bool {
		return membership(t, bob, room, bot) == event.MembershipLeave
	})
}
