package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// generatedState is a resident whose /state answer holds, after the
// room's real state (read from the resident node over HTTP, streamed),
// n member events made on the fly, signed by the resident's key: an answer
// far larger than anything the test keeps. Its /state_ids names more
// events than the joining node has, so that the resync asks for /state.
type generatedState struct {
	rooms.Remote
	a         *testnode.Node
	version   id.RoomVersion
	auth      []id.EventID // the join rules and power levels
	prev      id.EventID
	depth     int64
	n         int
	sentBytes atomic.Int64
	started   chan struct{}
	once      sync.Once
}

func (g *generatedState) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) ([]id.EventID, []id.EventID, error) {
	state, chain, err := g.Remote.GetStateIDs(ctx, server, roomID, eventID)
	for i := range 128 {
		state = append(state, id.EventID(fmt.Sprintf("$generated%d", i)))
	}
	return state, chain, err
}

func (g *generatedState) GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(bool, json.RawMessage) error) error {
	g.once.Do(func() { close(g.started) })
	if err := g.Remote.GetState(ctx, server, roomID, eventID, each); err != nil {
		return err
	}
	for i := range g.n {
		raw, err := g.member(roomID, i)
		if err != nil {
			return err
		}
		g.sentBytes.Add(int64(len(raw)))
		if err := each(false, raw); err != nil {
			return err
		}
	}
	return nil
}

// member is generated member i's join, signed by the resident.
func (g *generatedState) member(roomID id.RoomID, i int) (json.RawMessage, error) {
	user := fmt.Sprintf("@gen%d:%s", i, g.a.Config.ServerName)
	tmpl, err := json.Marshal(map[string]any{
		"type": "m.room.member", "state_key": user, "sender": user, "room_id": roomID,
		"content": map[string]any{"membership": "join", "displayname": fmt.Sprintf("Gen %d", i), "org.example.padding": padding},
		"depth":   g.depth, "prev_events": []id.EventID{g.prev}, "auth_events": g.auth,
	})
	if err != nil {
		return nil, err
	}
	_, raw, err := g.a.Rooms.SignTemplate(g.version, tmpl)
	return raw, err
}

// padding makes each generated event about 2.5 KiB, so that the answer
// is large beside the state's keys and IDs, which B keeps while it
// completes the state.
var padding = strings.Repeat("p", 2000)

// liveHeap is the heap the last garbage collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestPartialStateResyncStreamsBigState: bob of B joins a room of A with
// partial state; A's /state answer then holds 20,000 more member events
// of 2.5 KiB (made on the fly; MATRIXOS_STATE_EVENTS sets another count,
// 200000 for the size of Matrix HQ). B reads it as a stream: the live heap
// while the answer is checked and written grows by far less than the
// answer's size beyond what B keeps of the room afterwards, and B's state
// holds every generated member and A's state.
func TestPartialStateResyncStreamsBigState(t *testing.T) {
	ctx := context.Background()
	a, b, bob, roomID, g := startGenerated(t)
	b.Rooms.Remote = g

	heap := sampleHeap(g.started)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	wait, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if !b.Rooms.AwaitFullState(wait, roomID) {
		t.Fatal("B's state of the room never became complete")
	}
	heap.check(t, uint64(g.sentBytes.Load()))
	checkGeneratedState(t, a, b, roomID, g.n)
}

// TestFullStateJoinStreamsBigAnswer: bob of B joins a room of A with the
// full state (FullStateJoins); A's send_join answer holds, after the
// room's real state, 20,000 more member events of 2.5 KiB made on the fly
// (MATRIXOS_STATE_EVENTS sets another count) as it is sent: 50 MB, beyond
// what any answer read whole may be. B reads and checks it as a stream
// with the machinery of the resync's /state: the live heap while the
// answer is checked and written grows by far less than the answer's size
// beyond what B keeps of the room afterwards, and B's state holds every
// generated member and A's state.
func TestFullStateJoinStreamsBigAnswer(t *testing.T) {
	ctx := context.Background()
	a, b, bob, roomID, g := startGenerated(t)
	b.Federation.FullStateJoins = true
	hc := *b.Federation.Client.HTTP
	resident := &generatedJoin{RoundTripper: hc.Transport, g: g, roomID: roomID}
	hc.Transport = resident
	b.Federation.Client.HTTP = &hc

	heap := sampleHeap(g.started)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	// A join still going on after a while finishes in the background.
	testnode.WaitFor(t, 10*time.Minute, "bob's join on B", func() bool {
		if err, _ := resident.abandoned.Load().(error); err != nil {
			t.Fatalf("B stopped reading the send_join answer: %v", err)
		}
		return b.Rooms.Members(ctx, roomID)[bob.UserID] == "join"
	})
	if b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("B joined with partial state, want the full state")
	}
	heap.check(t, uint64(g.sentBytes.Load()))
	checkGeneratedState(t, a, b, roomID, g.n)
}

// generatedJoin is B's federation transport with A's send_join answer
// grown as it is sent: the generated members follow the real state's
// events (A's answer, its keys sorted, ends with the state array).
type generatedJoin struct {
	http.RoundTripper
	g         *generatedState
	roomID    id.RoomID
	abandoned atomic.Value // the error writing the answer met: B stopped reading it
}

func (j *generatedJoin) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := j.RoundTripper.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/v2/send_join/") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	real, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	head, found := bytes.CutSuffix(bytes.TrimSpace(real), []byte("]}"))
	if !found || !bytes.Contains(head, []byte(`"state":[{`)) {
		return nil, fmt.Errorf("A's send_join answer does not end with its state: %.200s", real)
	}
	j.g.once.Do(func() { close(j.g.started) })
	pr, pw := io.Pipe()
	go func() {
		err := j.writeAnswer(pw, head)
		if err != nil {
			j.abandoned.Store(err)
		}
		pw.CloseWithError(err)
	}()
	resp.Body, resp.ContentLength = pr, -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// writeAnswer writes A's answer up to the end of its state, then the
// generated members, then the end of the answer.
func (j *generatedJoin) writeAnswer(w io.Writer, head []byte) error {
	if _, err := w.Write(head); err != nil {
		return err
	}
	for i := range j.g.n {
		raw, err := j.g.member(j.roomID, i)
		if err != nil {
			return err
		}
		j.g.sentBytes.Add(int64(len(raw)))
		if _, err := w.Write(append([]byte{','}, raw...)); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "]}")
	return err
}

// startGenerated starts A with alice's public room and B with bob, and
// the generator of n member events of A (20,000, or MATRIXOS_STATE_EVENTS)
// for the room. B checks the state in batches of 500.
func startGenerated(t *testing.T) (a, b *testnode.Node, bob *mautrix.Client, roomID id.RoomID, g *generatedState) {
	n := 20_000
	if v := os.Getenv("MATRIXOS_STATE_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("MATRIXOS_STATE_EVENTS=%q: want a count of events", v)
		}
	}
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a = testnode.StartFederating(t, testnode.SQLite, ca)
	b = testnode.StartFederating(t, testnode.SQLite, ca)
	alice := a.Register("alice")
	bob = b.Register("bob")
	roomID = testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	b.Rooms.StateBatch = 500

	g = &generatedState{Remote: b.Rooms.Remote, a: a, n: n, started: make(chan struct{})}
	version, err := a.Rooms.Version(ctx, roomID)
	if err != nil {
		t.Fatalf("room version: %v", err)
	}
	g.version = version
	for _, typ := range []string{"m.room.join_rules", "m.room.power_levels"} {
		ev, err := a.Rooms.StateEvent(ctx, roomID, typ, "")
		if err != nil {
			t.Fatalf("%s on A: %v", typ, err)
		}
		g.auth = append(g.auth, ev.ID)
		g.prev, g.depth = ev.ID, ev.Depth+1
	}
	return a, b, bob, roomID, g
}

// liveHeapSampler follows the live heap from a start signal until check.
type liveHeapSampler struct {
	base    chan uint64
	peak    atomic.Uint64
	stop    chan struct{}
	sampled chan struct{}
}

// sampleHeap takes the live heap after started is closed as the base,
// then samples it every 5 ms.
func sampleHeap(started <-chan struct{}) *liveHeapSampler {
	h := &liveHeapSampler{base: make(chan uint64, 1), stop: make(chan struct{}), sampled: make(chan struct{})}
	go func() {
		defer close(h.sampled)
		<-started
		runtime.GC()
		h.base <- liveHeap()
		for {
			if l := liveHeap(); l > h.peak.Load() {
				h.peak.Store(l)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return h
}

// check stops the sampling and fails the test when the peak rose above
// what stays after a collection by more than a quarter of the answer.
func (h *liveHeapSampler) check(t *testing.T, answer uint64) {
	t.Helper()
	close(h.stop)
	<-h.sampled
	runtime.GC()
	after := liveHeap()
	var before uint64
	select {
	case before = <-h.base:
	default:
		t.Fatal("the answer was never asked for")
	}
	peak := h.peak.Load()
	transit := int64(peak) - int64(after)
	t.Logf("answer %d MB; live heap before %d MB, peak %d MB, after %d MB (room kept: %d MB); transit %d MB",
		answer>>20, before>>20, peak>>20, after>>20, (int64(after)-int64(before))>>20, transit>>20)
	if bound := int64(answer / 4); transit > bound {
		t.Errorf("the live heap rose %d MB above what B keeps of the room while the answer was checked, want under %d MB (a quarter of the %d MB answer)",
			transit>>20, bound>>20, answer>>20)
	}
}

// checkGeneratedState fails the test unless B's state of the room holds
// every generated member and A's state, and nothing else.
func checkGeneratedState(t *testing.T, a, b *testnode.Node, roomID id.RoomID, n int) {
	t.Helper()
	state, err := b.Rooms.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatalf("B's state: %v", err)
	}
	members := map[string]string{}
	for _, ev := range state {
		if ev.Type == "m.room.member" {
			var c struct {
				Membership  string `json:"membership"`
				Displayname string `json:"displayname"`
			}
			if err := json.Unmarshal(ev.PDU.Content, &c); err != nil {
				t.Fatalf("member event %s: %v", ev.ID, err)
			}
			members[*ev.StateKey] = c.Membership + " " + c.Displayname
		}
	}
	for i := range n {
		user := fmt.Sprintf("@gen%d:%s", i, a.Config.ServerName)
		if want := fmt.Sprintf("join Gen %d", i); members[user] != want {
			t.Fatalf("B's state holds %q for %s, want %q", members[user], user, want)
		}
	}
	sa := stateMap(t, a, roomID)
	sb := stateMap(t, b, roomID)
	for k, eid := range sa {
		if sb[k] != eid {
			t.Errorf("B's state holds %s for %s, A's %s", sb[k], k, eid)
		}
	}
	if want := len(sa) + n; len(sb) != want {
		t.Errorf("B's state has %d events, want A's %d and the %d generated", len(sb), len(sa), n)
	}
}
