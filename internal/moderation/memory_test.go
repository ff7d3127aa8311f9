package moderation

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestClassifierVocabularyBounded: past its vocabulary limit the
// classifier learns no new tokens, and still counts the ones it knows.
func TestClassifierVocabularyBounded(t *testing.T) {
	c := NewClassifier()
	c.maxVocabulary = 10
	for i := range 30 {
		c.Learn([]string{fmt.Sprint("word", i), "common"}, Ham)
	}
	if got := c.Vocabulary(); got != 10 {
		t.Fatalf("vocabulary %d, want the limit 10", got)
	}
	if got := c.counts["common"][Ham]; got != 30 {
		t.Fatalf("a known token counted %d times, want 30", got)
	}
	if NewClassifier().maxVocabulary != MaxVocabulary {
		t.Fatal("a new classifier has no vocabulary limit")
	}
}

// TestRememberBounded: a room's remembered messages stay within
// recentPerRoom messages and recentBytesPerRoom of bodies, newest kept,
// and forgetRoom drops them.
func TestRememberBounded(t *testing.T) {
	s := New(Options{Log: slog.New(slog.DiscardHandler)})
	room := id.RoomID("!a:example.org")
	big := strings.Repeat("x", 64<<10)
	for i := range 40 {
		s.remember(room, &recentMsg{eventID: id.EventID(fmt.Sprint("$big", i)), body: big})
	}
	size := 0
	for _, m := range s.recent[room] {
		size += len(m.body)
	}
	if size > recentBytesPerRoom || size != s.recentBytes[room] || len(s.recent[room]) != recentBytesPerRoom/len(big) {
		t.Fatalf("%d messages of %d bytes remembered (counted %d), want %d within %d bytes",
			len(s.recent[room]), size, s.recentBytes[room], recentBytesPerRoom/len(big), recentBytesPerRoom)
	}
	if last := s.recent[room][len(s.recent[room])-1]; last.eventID != "$big39" {
		t.Fatalf("the newest message remembered is %s", last.eventID)
	}
	for i := range recentPerRoom + 100 {
		s.remember(room, &recentMsg{eventID: id.EventID(fmt.Sprint("$small", i)), body: "hi"})
	}
	if got := len(s.recent[room]); got != recentPerRoom {
		t.Fatalf("%d messages remembered, want %d", got, recentPerRoom)
	}
	s.flood[string(room)+"\x00@u:example.org"] = []int64{1}
	s.forgetRoom(room)
	if s.remembered() != 0 || s.recentBytes[room] != 0 || len(s.flood) != 0 {
		t.Fatalf("forgetRoom kept %d messages, %d bytes, %d flood windows", s.remembered(), s.recentBytes[room], len(s.flood))
	}
}
