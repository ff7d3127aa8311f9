package assistant

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// conversation loads testdata/conversation.json as messages a minute
// apart, each with a link naming its index.
func conversation(t testing.TB) []Message {
	t.Helper()
	data, err := os.ReadFile("testdata/conversation.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw []struct{ Sender, Body string }
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	msgs := make([]Message, len(raw))
	for i, r := range raw {
		msgs[i] = Message{EventID: id.EventID(fmt.Sprintf("$m%d", i)), Sender: id.UserID(r.Sender), Body: r.Body,
			Time: start.Add(time.Duration(i) * time.Minute), Link: fmt.Sprintf("https://matrix.to/#/!r/$m%d", i)}
	}
	return msgs
}

// TestOfflineSummaryPicksKeySentences: the summary of the fixed
// conversation keeps the decision, the date, the owner of the guide and
// the deadline, and none of the chit-chat.
func TestOfflineSummaryPicksKeySentences(t *testing.T) {
	got, err := Offline{}.Summarize(context.Background(), conversation(t), 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", got)
	for _, want := range []string{
		"So we decided: the migration tool rebuilds the index after the migration",
		"We agreed last week on March 3rd for the 2.0 release",
		"I will write the migration guide for the 2.0 release by Friday.",
		"Deadline for the migration fix is Wednesday",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, noise := range []string{"Good morning", "lol", "weather", "charger", "lunch", "haha", "Coffee"} {
		if strings.Contains(got, noise) {
			t.Errorf("summary has chit-chat %q", noise)
		}
	}
	if !strings.Contains(got, "(@alice:example.org, https://matrix.to/#/!r/$m8)") {
		t.Errorf("summary does not link the decision to its message $m8")
	}
}

// TestSearchFindsTheRelevantMessages: a question finds the messages
// that answer it first.
func TestSearchFindsTheRelevantMessages(t *testing.T) {
	msgs := conversation(t)
	for _, tc := range []struct {
		question string
		want     []id.EventID // any of them answers
	}{
		{"when is the release date?", []id.EventID{"$m11", "$m17"}},
		{"who writes the migration guide", []id.EventID{"$m14"}},
		{"why does the migration tool fail?", []id.EventID{"$m4"}},
	} {
		hits := search(msgs, tc.question, 3)
		if len(hits) == 0 {
			t.Errorf("%q: no hits", tc.question)
			continue
		}
		found := false
		for _, h := range hits {
			found = found || slices.Contains(tc.want, h.EventID)
		}
		if !found {
			t.Errorf("%q: hits %v lack %s", tc.question, ids(hits), tc.want)
		}
	}
	if hits := search(msgs, "kubernetes helm chart", 3); len(hits) != 0 {
		t.Errorf("unrelated question hits %v", ids(hits))
	}
}

func ids(msgs []Message) []id.EventID {
	out := make([]id.EventID, len(msgs))
	for i, m := range msgs {
		out[i] = m.EventID
	}
	return out
}

func TestDetectLanguage(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"We decided to ship the release on Monday, and the tests are green.", "en"},
		{"Wir haben beschlossen, dass die Version am Montag erscheint und ich die Anleitung schreibe.", "de"},
		{"Nous avons décidé que la version sort lundi et je vais écrire le guide pour vous.", "fr"},
		{"Hemos decidido que la versión sale el lunes y yo escribo la guía para los usuarios.", "es"},
		{"Мы решили выпустить версию в понедельник.", "ru"},
		{"リリースは月曜日です。", "ja"},
	} {
		got, ok := DetectLanguage(tc.text)
		if !ok || got.Code != tc.want {
			t.Errorf("DetectLanguage(%q) = %v, %v; want %s", tc.text, got, ok, tc.want)
		}
	}
	if got, ok := DetectLanguage("12345 ..."); ok {
		t.Errorf("DetectLanguage of digits = %v", got)
	}
}

func TestOfflineRefusesTranslationAndDrafting(t *testing.T) {
	if _, err := (Offline{}).Translate(context.Background(), "hello", "de"); err != ErrNeedsModel {
		t.Errorf("Translate: %v, want ErrNeedsModel", err)
	}
	if _, err := (Offline{}).Draft(context.Background(), nil, ""); err != ErrNeedsModel {
		t.Errorf("Draft: %v, want ErrNeedsModel", err)
	}
}

// BenchmarkOfflineSummary sums up 1,000 messages (the fixed conversation
// repeated, with the words varied) with the offline engine.
func BenchmarkOfflineSummary(b *testing.B) {
	base := conversation(b)
	msgs := make([]Message, 1000)
	for i := range msgs {
		m := base[i%len(base)]
		m.Body = fmt.Sprintf("%s (item %d of topic%d)", m.Body, i, i%37)
		m.EventID = id.EventID(fmt.Sprintf("$b%d", i))
		msgs[i] = m
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := (Offline{}).Summarize(context.Background(), msgs, 7); err != nil {
			b.Fatal(err)
		}
	}
}
