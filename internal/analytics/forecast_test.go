package analytics

import (
	"math"
	"math/rand/v2"
	"testing"
)

// seasonalSeries is hourly activity with a daily cycle, a slow trend and
// noise: quiet nights, a busy afternoon.
func seasonalSeries(days int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	y := make([]float64, days*24)
	for t := range y {
		daily := 12 * math.Sin(2*math.Pi*float64(t%24-9)/24)
		y[t] = max(0, 20+daily+0.01*float64(t)+rng.NormFloat64()*2)
	}
	return y
}

func TestForecastBeatsTheMean(t *testing.T) {
	for _, tc := range []struct {
		name string
		days int
		seed uint64
	}{{"two weeks", 14, 1}, {"four weeks", 28, 2}, {"three days", 3, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			y := seasonalSeries(tc.days, tc.seed)
			history, holdout := y[:len(y)-24], y[len(y)-24:]
			m, ok := FitHoltWinters(history, 24)
			if !ok {
				t.Fatalf("no model fitted to %d hours", len(history))
			}
			hw, naive := MAE(m.Forecast(24), holdout), MAE(MeanForecast(history, 24), holdout)
			t.Logf("holdout MAE over 24 h: holt-winters %.2f (alpha %.2f beta %.2f gamma %.2f), mean %.2f", hw, m.Alpha, m.Beta, m.Gamma, naive)
			if hw >= naive/2 {
				t.Fatalf("holt-winters MAE %.2f is not under half the mean's %.2f", hw, naive)
			}
		})
	}
}

func TestForecastNeedsTwoSeasons(t *testing.T) {
	if _, ok := FitHoltWinters(make([]float64, 47), 24); ok {
		t.Fatal("a model was fitted to less than two seasons")
	}
	m, ok := FitHoltWinters(make([]float64, 48), 24)
	if !ok {
		t.Fatal("no model fitted to two seasons")
	}
	for _, v := range m.Forecast(5) {
		if v != 0 {
			t.Fatalf("a silent room is forecast %v", v)
		}
	}
}

func TestMedianOfBins(t *testing.T) {
	for _, tc := range []struct {
		name string
		bins map[int]int64
		want float64
		ok   bool
	}{
		{"none", map[int]int64{}, 0, false},
		{"all under a second", map[int]int64{0: 4}, 0.5, true},
		{"one bin", map[int]int64{replyBin(60): 2}, 48, true}, // [32, 64)
		{"split", map[int]int64{replyBin(1): 1, replyBin(100): 3}, 64 + 64*(1/3.0), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, ok := medianOf(tc.bins)
			if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("median %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBatchCountsRepliesBetweenSenders(t *testing.T) {
	const room = "!r:x"
	b := newBatch()
	msgs := []Message{
		{room, "@a:x", 0},
		{room, "@a:x", 1_000},      // same sender: no reply
		{room, "@b:x", 31_000},     // 30 s after a: reply
		{room, "@a:x", 31_500},     // 0.5 s: reply, bin 0
		{room, "@b:x", 90_000_000}, // over a day later: not a reply
	}
	for _, m := range msgs {
		b.add(m, last{}, false)
	}
	want := map[replyKey]int64{{room, 0, replyBin(30)}: 1, {room, 0, 0}: 1}
	if len(b.replies) != len(want) {
		t.Fatalf("replies %v, want %v", b.replies, want)
	}
	for k, n := range want {
		if b.replies[k] != n {
			t.Fatalf("replies %v, want %v", b.replies, want)
		}
	}
	if got := b.hours[hourKey{room, 0}]; got != 4 {
		t.Fatalf("hour 0 counts %d messages, want 4", got)
	}
	if got := b.senders[senderKey{room, 1, "@b:x"}]; got != 1 {
		t.Fatalf("day 1 counts %d messages of @b:x, want 1", got)
	}
}
