package keys_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	gosync "sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/sync"
	"github.com/matrixos/matrixos/internal/testnode"
)

// deviceListsPage is what one sync told of device lists: the token to go
// on from and device_lists' changed and left.
type deviceListsPage struct {
	next          string
	changed, left []id.UserID
}

// deviceListsChain follows one viewer's device lists through consecutive
// tokens of /sync or of sliding sync's e2ee extension, remembering the last
// thing said of each user ("changed" or "left") since forget.
type deviceListsChain struct {
	name  string
	page  func(ctx context.Context, since string) (deviceListsPage, error)
	since string
	last  map[id.UserID]string
}

func (ch *deviceListsChain) step(ctx context.Context) (deviceListsPage, error) {
	p, err := ch.page(ctx, ch.since)
	if err != nil {
		return p, fmt.Errorf("%s: %w", ch.name, err)
	}
	for _, u := range p.changed {
		if slices.Contains(p.left, u) {
			return p, fmt.Errorf("%s: %s both changed and left in one response", ch.name, u)
		}
		ch.last[u] = "changed"
	}
	for _, u := range p.left {
		ch.last[u] = "left"
	}
	ch.since = p.next
	return p, nil
}

func classicChain(c *mautrix.Client) *deviceListsChain {
	return &deviceListsChain{name: "/sync of " + string(c.UserID), last: map[id.UserID]string{},
		page: func(ctx context.Context, since string) (deviceListsPage, error) {
			q := map[string]string{"timeout": "0", "filter": `{"room":{"timeline":{"limit":1}}}`}
			if since != "" {
				q["since"] = since
			}
			var out struct {
				NextBatch   string `json:"next_batch"`
				DeviceLists struct {
					Changed []id.UserID `json:"changed"`
					Left    []id.UserID `json:"left"`
				} `json:"device_lists"`
			}
			_, err := c.MakeRequest(ctx, "GET", c.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, q), nil, &out)
			return deviceListsPage{out.NextBatch, out.DeviceLists.Changed, out.DeviceLists.Left}, err
		}}
}

func slidingChain(c *mautrix.Client) *deviceListsChain {
	body := map[string]any{"conn_id": "e2ee", "extensions": map[string]any{"e2ee": map[string]any{"enabled": true}}}
	return &deviceListsChain{name: "sliding sync of " + string(c.UserID), last: map[id.UserID]string{},
		page: func(ctx context.Context, pos string) (deviceListsPage, error) {
			url := c.HomeserverURL.String() + sync.SlidingPath + "?timeout=0"
			if pos != "" {
				url += "&pos=" + pos
			}
			var out struct {
				Pos        string `json:"pos"`
				Extensions struct {
					E2EE struct {
						DeviceLists struct {
							Changed []id.UserID `json:"changed"`
							Left    []id.UserID `json:"left"`
						} `json:"device_lists"`
					} `json:"e2ee"`
				} `json:"extensions"`
			}
			_, err := c.MakeRequest(ctx, "POST", url, body, &out)
			dl := out.Extensions.E2EE.DeviceLists
			return deviceListsPage{out.Pos, dl.Changed, dl.Left}, err
		}}
}

// roomMembers is the test's model of who is joined to which room.
type roomMembers map[id.RoomID]map[id.UserID]bool

func (m roomMembers) shares(a, b id.UserID) bool {
	for _, members := range m {
		if members[a] && members[b] {
			return true
		}
	}
	return false
}

func (m roomMembers) clone() roomMembers {
	out := roomMembers{}
	for r, members := range m {
		out[r] = maps.Clone(members)
	}
	return out
}

// TestDeviceListsReachEverySharer: in rounds of concurrent device changes
// (renames of devices with keys), joins and leaves by several users in
// random order, while every user follows /sync and sliding sync's e2ee
// extension from token to token, each viewer's chain ends a round having
// last said "changed" of every user who shares a room with it now and
// changed devices or began sharing in the round (itself too when it
// changed devices), and "left" of every user it no longer shares a room
// with and shared one with at the start or was told of in the round; the
// round's last response, taken at rest, names as changed only the viewer
// and users who share a room with it, and as left only users who do not.
func TestDeviceListsReachEverySharer(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		const members, nRooms, rounds, opsPerUser = 5, 3, 4, 4
		ctx := context.Background()
		host := n.Register("host")
		users := []*mautrix.Client{host}
		for range members {
			users = append(users, n.Register("member"))
		}
		model := roomMembers{}
		var roomIDs []id.RoomID
		for range nRooms {
			roomID := testnode.PublicRoom(t, host)
			roomIDs = append(roomIDs, roomID)
			model[roomID] = map[id.UserID]bool{host.UserID: true}
		}
		var chains [][2]*deviceListsChain
		for _, c := range users {
			testnode.Call(t, c, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, c).deviceKeys(t)}).OK(t)
			pair := [2]*deviceListsChain{classicChain(c), slidingChain(c)}
			for _, ch := range pair {
				if _, err := ch.step(ctx); err != nil {
					t.Fatal(err)
				}
			}
			chains = append(chains, pair)
		}
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
		for round := range rounds {
			start := model.clone()
			renamed := map[id.UserID]bool{}
			// Each member's operations, drawn now, run in order on its
			// own goroutine; the model is what they leave.
			plans := make([][]func() error, len(users))
			for i, c := range users[1:] {
				for k := range opsPerUser {
					roomID := roomIDs[rng.IntN(nRooms)]
					switch {
					case rng.IntN(3) == 0:
						renamed[c.UserID] = true
						name := "device " + strconv.Itoa(round) + "." + strconv.Itoa(k)
						plans[i+1] = append(plans[i+1], func() error {
							return c.SetDeviceInfo(ctx, c.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: name})
						})
					case model[roomID][c.UserID]:
						model[roomID][c.UserID] = false
						plans[i+1] = append(plans[i+1], func() error { _, err := c.LeaveRoom(ctx, roomID); return err })
					default:
						model[roomID][c.UserID] = true
						plans[i+1] = append(plans[i+1], func() error { _, err := c.JoinRoomByID(ctx, roomID); return err })
					}
				}
			}
			for _, pair := range chains {
				for _, ch := range pair {
					clear(ch.last)
				}
			}
			var ops, polls gosync.WaitGroup
			done := make(chan struct{})
			for _, pair := range chains {
				for _, ch := range pair {
					polls.Go(func() {
						for {
							select {
							case <-done:
								return
							case <-time.After(time.Duration(rand.IntN(3)) * time.Millisecond):
							}
							if _, err := ch.step(ctx); err != nil {
								t.Error(err)
								return
							}
						}
					})
				}
			}
			for _, plan := range plans {
				ops.Go(func() {
					for _, op := range plan {
						if err := op(); err != nil {
							t.Errorf("round %d: %v", round, err)
							return
						}
					}
				})
			}
			ops.Wait()
			close(done)
			polls.Wait()
			if t.Failed() {
				t.FailNow()
			}
			for v, pair := range chains {
				viewer := users[v].UserID
				for _, ch := range pair {
					last, err := ch.step(ctx) // at rest
					if err != nil {
						t.Fatal(err)
					}
					for _, u := range last.changed {
						if u != viewer && !model.shares(viewer, u) {
							t.Errorf("round %d, %s: %s changed without a shared room", round, ch.name, u)
						}
					}
					for _, u := range last.left {
						if model.shares(viewer, u) {
							t.Errorf("round %d, %s: %s left while sharing a room", round, ch.name, u)
						}
					}
					for _, c := range users {
						u := c.UserID
						shareStart, shareEnd := start.shares(viewer, u), model.shares(viewer, u)
						var want string
						switch {
						case u == viewer:
							if renamed[u] {
								want = "changed"
							}
						case shareEnd && (renamed[u] || !shareStart):
							want = "changed"
						case !shareEnd && (shareStart || ch.last[u] != ""):
							want = "left"
						}
						if want != "" && ch.last[u] != want {
							t.Errorf("round %d, %s: last said %q of %s, want %q (shared at start %v, at end %v, renamed %v)",
								round, ch.name, ch.last[u], u, want, shareStart, shareEnd, renamed[u])
						}
					}
				}
			}
		}
	})
}
