package automation

import (
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

type idUser = id.UserID

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		name, rule, err string
	}{
		{"message and send", `{"trigger":{"type":"message","pattern":"^!hi"},"actions":[{"type":"send","body":"hi {sender}"}]}`, ""},
		{"join and tag", `{"trigger":{"type":"join"},"actions":[{"type":"tag","tag":"u.new"}]}`, ""},
		{"reaction and invite", `{"trigger":{"type":"reaction","key":"👍"},"actions":[{"type":"invite","user_id":"@a:x"}]}`, ""},
		{"schedule and webhook", `{"trigger":{"type":"schedule","at":"09:30","weekdays":[1,5]},"actions":[{"type":"webhook","url":"https://example.org/h"}]}`, ""},
		{"webhook and forward", `{"trigger":{"type":"webhook"},"actions":[{"type":"forward","room_id":"!r:x"}]}`, ""},
		{"contract", `{"trigger":{"type":"join"},"actions":[{"type":"contract","event_type":"org.example.in","content":{"n":1}}]}`, ""},
		{"conditions", `{"trigger":{"type":"join"},"conditions":{"senders":["@a:x"],"hours":[22,6],"weekdays":[0]},"actions":[{"type":"send","body":"x"}]}`, ""},
		{"not JSON", `{`, "unexpected"},
		{"unknown trigger", `{"trigger":{"type":"sometimes"},"actions":[{"type":"send","body":"x"}]}`, "unknown type"},
		{"bad pattern", `{"trigger":{"type":"message","pattern":"("},"actions":[{"type":"send","body":"x"}]}`, "pattern"},
		{"bad time", `{"trigger":{"type":"schedule","at":"25:00"},"actions":[{"type":"send","body":"x"}]}`, "HH:MM"},
		{"bad weekday", `{"trigger":{"type":"schedule","at":"09:00","weekdays":[7]},"actions":[{"type":"send","body":"x"}]}`, "weekday 7"},
		{"no actions", `{"trigger":{"type":"join"},"actions":[]}`, "1 to 10 actions"},
		{"unknown action", `{"trigger":{"type":"join"},"actions":[{"type":"explode"}]}`, "unknown type"},
		{"send without body", `{"trigger":{"type":"join"},"actions":[{"type":"send"}]}`, "body"},
		{"webhook scheme", `{"trigger":{"type":"join"},"actions":[{"type":"webhook","url":"file:///etc/passwd"}]}`, "http"},
		{"bad user", `{"trigger":{"type":"join"},"actions":[{"type":"invite","user_id":"bob"}]}`, "user_id"},
		{"forward from a join", `{"trigger":{"type":"join"},"actions":[{"type":"forward","room_id":"!r:x"}]}`, "message or webhook"},
		{"contract in m.", `{"trigger":{"type":"join"},"actions":[{"type":"contract","event_type":"m.room.message"}]}`, "m. namespace"},
		{"bad hours", `{"trigger":{"type":"join"},"conditions":{"hours":[0,25]},"actions":[{"type":"send","body":"x"}]}`, "hours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRule("r", []byte(tc.rule))
			if tc.err == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
		})
	}
}

func TestNextRun(t *testing.T) {
	monday := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		at       string
		weekdays []int
		last     time.Time
		want     time.Time
	}{
		{"later today", "09:00", nil, monday.Add(8 * time.Hour), monday.Add(9 * time.Hour)},
		{"tomorrow", "09:00", nil, monday.Add(9 * time.Hour), monday.Add(33 * time.Hour)},
		{"friday only", "09:00", []int{5}, monday.Add(10 * time.Hour), monday.Add(4*24*time.Hour + 9*time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := Trigger{Type: TriggerSchedule, At: tc.at, Weekdays: tc.weekdays}
			if err := tr.check(); err != nil {
				t.Fatal(err)
			}
			if got := tr.nextRun(tc.last); !got.Equal(tc.want) {
				t.Fatalf("next run %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConditionsAllow(t *testing.T) {
	monday10 := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	hours := func(from, to int) *[2]int { return &[2]int{from, to} }
	for _, tc := range []struct {
		name   string
		c      Conditions
		sender string
		at     time.Time
		want   bool
	}{
		{"none", Conditions{}, "@a:x", monday10, true},
		{"sender listed", Conditions{Senders: []idUser{"@a:x"}}, "@a:x", monday10, true},
		{"sender not listed", Conditions{Senders: []idUser{"@b:x"}}, "@a:x", monday10, false},
		{"sender excluded", Conditions{NotSenders: []idUser{"@a:x"}}, "@a:x", monday10, false},
		{"no sender", Conditions{Senders: []idUser{"@b:x"}}, "", monday10, true},
		{"within hours", Conditions{Hours: hours(9, 17)}, "@a:x", monday10, true},
		{"outside hours", Conditions{Hours: hours(11, 17)}, "@a:x", monday10, false},
		{"overnight", Conditions{Hours: hours(22, 11)}, "@a:x", monday10, true},
		{"weekday", Conditions{Weekdays: []int{1}}, "@a:x", monday10, true},
		{"weekend only", Conditions{Weekdays: []int{0, 6}}, "@a:x", monday10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.allows(idUser(tc.sender), tc.at); got != tc.want {
				t.Fatalf("allows %v, want %v", got, tc.want)
			}
		})
	}
}
