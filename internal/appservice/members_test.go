package appservice

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"
)

func bridgeRegistration(t testing.TB) *Registration {
	ns, err := NewNamespace(`@bridge_.*:example\.org`, true)
	if err != nil {
		t.Fatal(err)
	}
	return &Registration{ID: "bridge", SenderLocalpart: "bridgebot", Namespaces: Namespaces{Users: []Namespace{ns}}}
}

// TestMemberCache: the answer for a room's members map is remembered for
// that map, and a new map (a membership change) is asked afresh.
func TestMemberCache(t *testing.T) {
	reg := bridgeRegistration(t)
	var c memberCache
	room := id.RoomID("!r:example.org")
	members := map[id.UserID]string{"@alice:example.org": "join", "@bridge_bob:example.org": "leave"}
	if c.interested(reg, room, members) {
		t.Fatal("no joined member is in the namespace")
	}
	// The same map is answered from the cache (the engine never changes
	// a members map; this test does, to see the cache answer).
	members["@bridge_bob:example.org"] = "join"
	if c.interested(reg, room, members) {
		t.Fatal("the same map was asked afresh instead of from the cache")
	}
	joined := map[id.UserID]string{"@alice:example.org": "join", "@bridge_bob:example.org": "join"}
	if !c.interested(reg, room, joined) {
		t.Fatal("a new members map with a namespace member joined is not interesting")
	}
	if c.interested(reg, "!other:example.org", map[id.UserID]string{"@alice:example.org": "join"}) {
		t.Fatal("another room shares the first room's answer")
	}
}

// TestMemberCacheKeepsHotRooms: a full cache forgets the room used least
// recently, not everything: a room whose events keep coming stays cached
// while far more rooms than the cache holds pass through, and a room not
// used since is asked afresh.
func TestMemberCacheKeepsHotRooms(t *testing.T) {
	reg := bridgeRegistration(t)
	var c memberCache
	hot, cold := id.RoomID("!hot:example.org"), id.RoomID("!cold:example.org")
	hotMembers := map[id.UserID]string{"@bridge_bob:example.org": "join"}
	coldMembers := map[id.UserID]string{"@bridge_bob:example.org": "join"}
	if !c.interested(reg, hot, hotMembers) || !c.interested(reg, cold, coldMembers) {
		t.Fatal("a room with a namespace member joined is not interesting")
	}
	for i := range 2 * maxMemberCache {
		room := id.RoomID(fmt.Sprintf("!r%d:example.org", i))
		c.interested(reg, room, map[id.UserID]string{"@alice:example.org": "join"})
		if i%100 == 0 {
			c.interested(reg, hot, hotMembers)
		}
	}
	// Changing the maps (which the engine never does) shows whether the
	// answer comes from the cache.
	hotMembers["@bridge_bob:example.org"], coldMembers["@bridge_bob:example.org"] = "leave", "leave"
	if !c.interested(reg, hot, hotMembers) {
		t.Error("the hot room was asked afresh: the cache forgot it")
	}
	if c.interested(reg, cold, coldMembers) {
		t.Error("the cold room is still cached after 20,000 other rooms")
	}
}

// BenchmarkQueueEventInterest: deciding whether an event of a room with
// 10,000 members interests an appservice, the first time (a regular
// expression per member) and then from the cache.
func BenchmarkQueueEventInterest(b *testing.B) {
	reg := bridgeRegistration(b)
	members := map[id.UserID]string{}
	for i := range 10000 {
		members[id.UserID(fmt.Sprintf("@user%d:example.org", i))] = "join"
	}
	room := id.RoomID("!big:example.org")
	b.Run("uncached", func(b *testing.B) {
		for range b.N {
			namespaceMemberIn(reg, members)
		}
	})
	b.Run("cached", func(b *testing.B) {
		var c memberCache
		c.interested(reg, room, members)
		b.ResetTimer()
		for range b.N {
			c.interested(reg, room, members)
		}
	})
}
