package analytics

import (
	"math"
	"math/rand/v2"
	"strings"
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

// TestShortHistoryForecast: with under two days of history the forecast
// is an hour-of-day profile (under six hours none at all), never one
// burst repeated for 24 hours, within an error bound of what came next
// on synthetic series; the answer names the model and the history.
func TestShortHistoryForecast(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 1))
	series := func(n int, f func(t int) float64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(math.Round(max(0, f(i))))
		}
		return out
	}
	burst := func(t int) float64 {
		if t == 0 {
			return 456
		}
		return 0
	}
	for _, tc := range []struct {
		name    string
		hours   int // history before the 24 hours forecast
		f       func(t int) float64
		model   string
		maxMAE  float64 // against what came next
		maxSum  float64 // the 24 hours' total at most (0: no bound)
		beatMAE bool    // better than the old forecast (the mean)
	}{
		{"flat", 30, func(int) float64 { return 10 + rng.NormFloat64()*2 }, ModelProfile, 3, 0, false},
		{"one burst", 20, burst, ModelProfile, 10, 456 / 2, true},
		{"one burst just now", 2, burst, ModelNone, 0, 0, false},
		{"daily seasonal", 40, func(t int) float64 { return 20 + 12*math.Sin(2*math.Pi*float64(t%24-9)/24) + rng.NormFloat64() }, ModelProfile, 7, 0, true},
		{"trend", 40, func(t int) float64 { return 5 + 0.5*float64(t) }, ModelProfile, 14, 0, true},
		{"two days: seasonal model", 60, func(t int) float64 { return 20 + 12*math.Sin(2*math.Pi*float64(t%24-9)/24) }, ModelHoltWinters, 3, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := series(tc.hours+24, tc.f)
			history, next := y[:tc.hours], y[tc.hours:]
			got := forecast(history, tc.hours%24)
			if got.Model != tc.model || got.HistoryHours != tc.hours {
				t.Fatalf("model %q fitted to %d hours, want %q and %d", got.Model, got.HistoryHours, tc.model, tc.hours)
			}
			if tc.model == ModelNone {
				if len(got.Hours) != 0 {
					t.Fatalf("a forecast from %d hours: %v", tc.hours, got.Hours)
				}
				return
			}
			actual := make([]float64, len(next))
			var sum float64
			for i, n := range next {
				actual[i] = float64(n)
			}
			for _, v := range got.Hours {
				sum += v
			}
			mae := MAE(got.Hours, actual)
			old := MAE(MeanForecast(toFloats(history), ForecastHours), actual)
			t.Logf("%s: MAE %.2f (the mean's %.2f), 24 h total %.0f", got.Model, mae, old, sum)
			if len(got.Hours) != ForecastHours || mae > tc.maxMAE {
				t.Fatalf("MAE %.2f over %d hours, want at most %.2f: %v", mae, len(got.Hours), tc.maxMAE, got.Hours)
			}
			if tc.maxSum > 0 && sum > tc.maxSum {
				t.Fatalf("24 h total %.0f, want at most %.0f: the burst is repeated", sum, tc.maxSum)
			}
			if tc.beatMAE && mae >= old {
				t.Fatalf("MAE %.2f is not under the mean's %.2f", mae, old)
			}
		})
	}
}

func toFloats(y []int64) []float64 {
	out := make([]float64, len(y))
	for i, n := range y {
		out[i] = float64(n)
	}
	return out
}

// TestForecastTextNamesModel: the answer says which model gave the
// forecast and how much history it had, or that there is not enough.
func TestForecastTextNamesModel(t *testing.T) {
	for _, tc := range []struct {
		f    ForecastResult
		want string
	}{
		{ForecastResult{Model: ModelHoltWinters, HistoryHours: 100, Hours: make([]float64, 24)}, "a Holt-Winters model with a daily season, fitted to 100 hours of history"},
		{ForecastResult{Model: ModelProfile, HistoryHours: 30, Hours: make([]float64, 24)}, "an hour-of-day profile shrunk toward the median, from 30 hours of history; a seasonal model needs 48"},
		{ForecastResult{Model: ModelNone, HistoryHours: 3}, "no forecast, not enough history yet: 3 hours (a forecast needs 6)"},
	} {
		if got := ForecastText(&Report{Forecast: tc.f}); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q does not say %q", tc.f.Model, got, tc.want)
		}
	}
}
