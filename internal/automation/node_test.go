package automation_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/automation"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

var ruleType = event.Type{Type: automation.StateType, Class: event.StateEventType}

// setup starts a node with an admin's public room that bob has joined.
func setup(t *testing.T, n *testnode.Node) (admin, bob *mautrix.Client, room id.RoomID) {
	t.Helper()
	admin = n.RegisterAdmin("admin")
	bob = n.Register("bob")
	resp, err := admin.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(t.Context(), resp.RoomID); err != nil {
		t.Fatal(err)
	}
	return admin, bob, resp.RoomID
}

func setRule(t *testing.T, c *mautrix.Client, room id.RoomID, name, rule string) {
	t.Helper()
	if _, err := c.SendStateEvent(t.Context(), room, ruleType, name, json.RawMessage(rule)); err != nil {
		t.Fatalf("set rule %s: %v", name, err)
	}
}

func catchUp(t *testing.T, n *testnode.Node) {
	t.Helper()
	if err := n.Automation.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func say(t *testing.T, c *mautrix.Client, room id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(t.Context(), room, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.EventID
}

// botSays returns the bodies the automation user sent in a room, oldest
// first.
func botSays(t *testing.T, n *testnode.Node, c *mautrix.Client, room id.RoomID) []string {
	t.Helper()
	resp, err := c.Messages(t.Context(), room, "", "", mautrix.DirectionBackward, nil, 200)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range slices.Backward(resp.Chunk) {
		if ev.Sender == n.Automation.Bot() && ev.Type == event.EventMessage {
			out = append(out, ev.Content.Raw["body"].(string))
		}
	}
	return out
}

func want(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("the automation user said %q, want %q", got, want)
	}
}

func TestMessageTriggerAndLoopSafety(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin, bob, room := setup(t, n)
		setRule(t, admin, room, "hello", `{"trigger":{"type":"message","pattern":"^!hello"},"actions":[{"type":"send","body":"hi {sender}"}]}`)
		// Matches everything, its own messages included, were they not
		// skipped.
		setRule(t, admin, room, "echo", `{"trigger":{"type":"message","pattern":"echo"},"conditions":{"not_senders":["`+string(admin.UserID)+`"]},"actions":[{"type":"send","body":"echo {body}"}]}`)
		catchUp(t, n)
		if n.Rooms.Membership(n.Automation.Bot(), room) != "join" {
			t.Fatal("the automation user did not join the room with rules")
		}
		say(t, bob, room, "nothing to see")
		say(t, admin, room, "echo from the admin") // excluded by the condition
		say(t, bob, room, "!hello there")
		say(t, bob, room, "echo")
		catchUp(t, n)
		catchUp(t, n)
		want(t, botSays(t, n, bob, room), "hi "+string(bob.UserID), "echo echo")
	})
}

func TestJoinReactionTagInvite(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, bob, room := setup(t, n)
	carol, dave := n.Register("carol"), n.Register("dave")
	setRule(t, admin, room, "welcome", `{"trigger":{"type":"join"},"actions":[{"type":"tag","tag":"u.community"},{"type":"send","body":"welcome {sender}"}]}`)
	setRule(t, admin, room, "thumbs", `{"trigger":{"type":"reaction","key":"👍"},"actions":[{"type":"invite","user_id":"`+string(dave.UserID)+`"}]}`)
	catchUp(t, n)
	// An ordinary member: it may invite once the room lets it.
	var pl event.PowerLevelsEventContent
	if err := admin.StateEvent(t.Context(), room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(n.Automation.Bot(), 50)
	if _, err := admin.SendStateEvent(t.Context(), room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.JoinRoomByID(t.Context(), room); err != nil {
		t.Fatal(err)
	}
	catchUp(t, n)
	want(t, botSays(t, n, bob, room), "welcome "+string(carol.UserID))
	tags, err := carol.GetTags(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tags.Tags["u.community"]; !ok {
		t.Fatalf("carol's tags %v lack u.community", tags.Tags)
	}
	// A profile change is no join.
	if err := carol.SetDisplayName(t.Context(), "Carol"); err != nil {
		t.Fatal(err)
	}
	msg := say(t, bob, room, "vote")
	if _, err := carol.SendReaction(t.Context(), room, msg, "👎"); err != nil {
		t.Fatal(err)
	}
	catchUp(t, n)
	if m := n.Rooms.Membership(dave.UserID, room); m != "" {
		t.Fatalf("dave is %q after a 👎", m)
	}
	if _, err := carol.SendReaction(t.Context(), room, msg, "👍"); err != nil {
		t.Fatal(err)
	}
	catchUp(t, n)
	if m := n.Rooms.Membership(dave.UserID, room); m != "invite" {
		t.Fatalf("dave is %q after a 👍, want invite", m)
	}
	want(t, botSays(t, n, bob, room), "welcome "+string(carol.UserID))
}

func TestScheduleUnderFakeClock(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		admin, _, room := setup(t, n)
		now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC) // a Monday
		var mu sync.Mutex
		n.Automation.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
		path := "/_matrixos/admin/v1/automation/rooms/" + string(room) + "/rules/digest"
		n.Do(t, "PUT", path, admin.AccessToken, json.RawMessage(`{"trigger":{"type":"schedule","at":"09:00","weekdays":[1,2]},"actions":[{"type":"send","body":"daily digest"}]}`),
			testnode.NoSpecCheck()).OK(t)
		for _, step := range []struct {
			at   time.Time
			runs int
		}{
			{now.Add(59 * time.Minute), 0},
			{now.Add(time.Hour), 1},
			{now.Add(90 * time.Minute), 1},
			{now.Add(25 * time.Hour), 2},             // Tuesday 09:00
			{now.Add(49 * time.Hour), 2},             // Wednesday: not a weekday of the rule
			{now.Add(7*24*time.Hour + time.Hour), 3}, // next Monday
		} {
			set(step.at)
			if err := n.Automation.RunDue(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := botSays(t, n, admin, room)
			if len(got) != step.runs {
				t.Fatalf("at %v the digest was sent %d times, want %d", step.at, len(got), step.runs)
			}
		}
	})
}

// hookServer records the calls an outgoing webhook makes.
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []automation.WebhookCall
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var call automation.WebhookCall
		json.Unmarshal(b, &call)
		h.mu.Lock()
		h.calls = append(h.calls, call)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

func webhookPath(t *testing.T, n *testnode.Node, admin *mautrix.Client, room id.RoomID, name string) string {
	t.Helper()
	var body struct {
		Rules []automation.RuleView `json:"rules"`
	}
	resp := n.Do(t, "GET", "/_matrixos/admin/v1/automation/rooms/"+string(room)+"/rules", admin.AccessToken, nil, testnode.NoSpecCheck())
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		t.Fatal(err)
	}
	for _, r := range body.Rules {
		if r.Name == name && r.Webhook != "" {
			return r.Webhook
		}
	}
	t.Fatalf("no webhook for rule %s in %s", name, resp.Body)
	return ""
}

func TestWebhookInAndOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []testnode.Option
		reached bool
	}{
		{"private addresses refused by default", nil, false},
		{"allowed by allow_private_networks", []testnode.Option{func(c *config.Config) { c.AllowPrivateNetworks = []string{"127.0.0.0/8"} }}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testnode.Start(t, testnode.SQLite, tc.opts...)
			admin, bob, room := setup(t, n)
			out := newHookServer(t)
			setRule(t, admin, room, "deploys", `{"trigger":{"type":"webhook"},"actions":[{"type":"webhook","url":"`+out.URL+`/in"},{"type":"send","body":"deploy: {body}"}]}`)
			catchUp(t, n)
			path := webhookPath(t, n, admin, room, "deploys")
			n.Do(t, "POST", path, "", map[string]any{"text": "v1.2 is live"}, testnode.NoSpecCheck()).OK(t)
			// The send after the outgoing call shows the rule ran.
			want(t, botSays(t, n, bob, room), "deploy: v1.2 is live")
			if got := out.count(); tc.reached != (got == 1) {
				t.Fatalf("the outgoing webhook was called %d times", got)
			}
			if tc.reached {
				if c := out.calls[0]; c.Rule != "deploys" || c.RoomID != room || c.Trigger != "webhook" || !strings.Contains(string(c.Content), "v1.2 is live") {
					t.Fatalf("outgoing call %+v", c)
				}
			}
		})
	}
}

func TestIncomingWebhookGuards(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, _, room := setup(t, n)
	now := time.Now()
	n.Automation.SetClock(func() time.Time { return now }) // no refill
	setRule(t, admin, room, "hook", `{"trigger":{"type":"webhook"},"actions":[{"type":"send","body":"{body}"}]}`)
	catchUp(t, n)
	path := webhookPath(t, n, admin, room, "hook")
	wrong := path[:len(path)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", path[len(path)-1])+1)%16])
	n.Do(t, "POST", wrong, "", map[string]any{}, testnode.NoSpecCheck()).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	n.Do(t, "POST", path, "", strings.Repeat("x", 20<<10), testnode.NoSpecCheck()).Want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	n.Do(t, "POST", path, "", []any{1}, testnode.NoSpecCheck()).Want(t, http.StatusBadRequest, "M_NOT_JSON")
	// The calls above used up two of the five in the burst.
	for range 3 {
		n.Do(t, "POST", path, "", map[string]any{"text": "ok"}, testnode.NoSpecCheck()).OK(t)
	}
	n.Do(t, "POST", path, "", map[string]any{"text": "ok"}, testnode.NoSpecCheck()).Want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	want(t, botSays(t, n, admin, room), "ok", "ok", "ok")
}

func TestForwardAndContractInput(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, bob, room := setup(t, n)
	other, err := admin.CreateRoom(t.Context(), &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	// The automation user accepts the invite into the private room.
	if _, err := admin.InviteUser(t.Context(), other.RoomID, &mautrix.ReqInviteUser{UserID: n.Automation.Bot()}); err != nil {
		t.Fatal(err)
	}
	setRule(t, admin, room, "fwd", `{"trigger":{"type":"message","pattern":"^!fwd "},"actions":[{"type":"forward","room_id":"`+string(other.RoomID)+`"},{"type":"contract","event_type":"org.example.tally.input","content":{"vote":1}}]}`)
	catchUp(t, n)
	if m := n.Rooms.Membership(n.Automation.Bot(), other.RoomID); m != "join" {
		t.Fatalf("the automation user is %q in the invited room", m)
	}
	trigger := say(t, bob, room, "!fwd look at this")
	catchUp(t, n)
	want(t, botSays(t, n, admin, other.RoomID), "!fwd look at this")
	resp, err := admin.Messages(t.Context(), room, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range resp.Chunk {
		if ev.Type.Type == "org.example.tally.input" && ev.Sender == n.Automation.Bot() {
			meta, _ := ev.Content.Raw["org.matrixos.automation"].(map[string]any)
			found = ev.Content.Raw["vote"] == float64(1) && meta["rule"] == "fwd" && meta["trigger"] == string(trigger)
		}
	}
	if !found {
		t.Fatal("no contract input event for the trigger")
	}
}

// TestPurgeRolledBackKeepsRules: a room purge whose write rolls back
// leaves the room's rules working; one that commits stops them.
func TestPurgeRolledBackKeepsRules(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, bob, room := setup(t, n)
	setRule(t, admin, room, "hello", `{"trigger":{"type":"message","pattern":"^!hello"},"actions":[{"type":"send","body":"hi"}]}`)
	catchUp(t, n)
	purge := func(fail error) error {
		return n.DB.Write(t.Context(), func(tx *storage.Tx) error {
			if err := n.Automation.PurgeRoom(t.Context(), tx, room); err != nil {
				return err
			}
			return fail
		})
	}
	abort := errors.New("abort the purge")
	if err := purge(abort); !errors.Is(err, abort) {
		t.Fatalf("purge: %v, want %v", err, abort)
	}
	say(t, bob, room, "!hello")
	catchUp(t, n)
	want(t, botSays(t, n, bob, room), "hi")
	if err := purge(nil); err != nil {
		t.Fatal(err)
	}
	say(t, bob, room, "!hello")
	catchUp(t, n)
	want(t, botSays(t, n, bob, room), "hi")
}

func TestRefusedRuleAndAdminAPI(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, bob, room := setup(t, n)
	setRule(t, admin, room, "broken", `{"trigger":{"type":"sometimes"},"actions":[]}`)
	catchUp(t, n)
	resp, err := bob.Messages(t.Context(), room, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, ev := range resp.Chunk {
		body, _ := ev.Content.Raw["body"].(string)
		refused = refused || ev.Sender == n.Automation.Bot() && strings.Contains(body, "automation rule refused") && strings.Contains(body, "broken")
	}
	if !refused {
		t.Fatal("the room was not told why its rule was refused")
	}
	base := "/_matrixos/admin/v1/automation/rooms/" + string(room) + "/rules"
	for _, tc := range []struct {
		name, method, path, token, errcode string
		body                               any
		status                             int
	}{
		{"not an admin", "GET", base, bob.AccessToken, "M_FORBIDDEN", nil, http.StatusForbidden},
		{"unknown room", "GET", "/_matrixos/admin/v1/automation/rooms/!nope:localhost/rules", admin.AccessToken, "M_NOT_FOUND", nil, http.StatusNotFound},
		{"bad rule", "PUT", base + "/x", admin.AccessToken, "M_INVALID_PARAM", map[string]any{"trigger": map[string]any{"type": "join"}}, http.StatusBadRequest},
		{"no such rule", "DELETE", base + "/x", admin.AccessToken, "M_NOT_FOUND", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.Do(t, tc.method, tc.path, tc.token, tc.body, testnode.NoSpecCheck()).Want(t, tc.status, tc.errcode)
		})
	}
	n.Do(t, "PUT", base+"/greet", admin.AccessToken, json.RawMessage(`{"trigger":{"type":"message","pattern":"^hi$"},"actions":[{"type":"send","body":"hello"}]}`), testnode.NoSpecCheck()).OK(t)
	say(t, bob, room, "hi")
	catchUp(t, n)
	n.Do(t, "DELETE", base+"/greet", admin.AccessToken, nil, testnode.NoSpecCheck()).OK(t)
	say(t, bob, room, "hi")
	say(t, bob, room, "hi")
	catchUp(t, n)
	want(t, botSays(t, n, bob, room)[1:], "hello")
}

func TestRuleCommand(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin, bob, room := setup(t, n)
	rule := `{"trigger":{"type":"message","pattern":"^ping$"},"actions":[{"type":"send","body":"pong"}]}`
	for _, tc := range []struct {
		name   string
		sender id.UserID
		args   string
		want   string // in the answer or the error
		ok     bool
	}{
		{"no power", bob.UserID, "add ping " + rule, "takes power level 50", false},
		{"bad rule", admin.UserID, `add ping {"trigger":{}}`, "unknown type", false},
		{"usage", admin.UserID, "frobnicate", "usage: rule", false},
		{"add", admin.UserID, "add ping " + rule, "Rule ping set: on message, 1 action(s).", true},
		{"list by anyone", bob.UserID, "list", `ping (assistant, by ` + string(admin.UserID) + `): on message matching "^ping$" → send`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, err := n.Automation.Command(t.Context(), room, tc.sender, tc.args)
			got := text
			if err != nil {
				got = err.Error()
			}
			if (err == nil) != tc.ok || !strings.Contains(got, tc.want) {
				t.Fatalf("answer %q, error %v; want %q", text, err, tc.want)
			}
		})
	}
	say(t, bob, room, "ping")
	catchUp(t, n)
	if _, err := n.Automation.Command(t.Context(), room, admin.UserID, "remove ping"); err != nil {
		t.Fatal(err)
	}
	say(t, bob, room, "ping")
	say(t, bob, room, "ping")
	catchUp(t, n)
	want(t, botSays(t, n, bob, room), "pong")
	if _, err := n.Automation.Command(t.Context(), room, admin.UserID, "remove ping"); err == nil {
		t.Fatal("a removed rule was removed again")
	}
}
