package analytics

import (
	"math"
	"slices"
)

// HoltWinters is an additive Holt-Winters model (level, trend and a
// season of Season steps) fitted to a series.
type HoltWinters struct {
	Alpha, Beta, Gamma float64 // smoothing of level, trend and season
	Season             int

	level, trend float64
	seasonal     []float64 // by step mod Season, the latest estimate
	n            int       // steps fitted
}

// smoothing values FitHoltWinters tries; it keeps the combination with
// the smallest one-step-ahead squared error.
var (
	levelGrid  = []float64{0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}
	trendGrid  = []float64{0, 0.01, 0.05, 0.1, 0.2}
	seasonGrid = []float64{0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}
)

// FitHoltWinters fits the model to y (at least two seasons) by a grid
// search over the smoothing parameters; ok is false when y is too short.
func FitHoltWinters(y []float64, season int) (m *HoltWinters, ok bool) {
	if season < 1 || len(y) < 2*season {
		return nil, false
	}
	best := math.Inf(1)
	for _, a := range levelGrid {
		for _, b := range trendGrid {
			for _, g := range seasonGrid {
				c := &HoltWinters{Alpha: a, Beta: b, Gamma: g, Season: season}
				if sse := c.fit(y); sse < best {
					best, m = sse, c
				}
			}
		}
	}
	return m, true
}

// fit runs the smoothing over y and returns the one-step-ahead sum of
// squared errors. The first season sets the level and the seasonal
// offsets, the first two the trend.
func (m *HoltWinters) fit(y []float64) float64 {
	s := m.Season
	first, second := mean(y[:s]), mean(y[s:2*s])
	m.level, m.trend = first, (second-first)/float64(s)
	m.seasonal = make([]float64, s)
	for i := range s {
		m.seasonal[i] = y[i] - first
	}
	var sse float64
	for t := s; t < len(y); t++ {
		season := m.seasonal[t%s]
		err := y[t] - (m.level + m.trend + season)
		sse += err * err
		prevLevel := m.level
		m.level = m.Alpha*(y[t]-season) + (1-m.Alpha)*(m.level+m.trend)
		m.trend = m.Beta*(m.level-prevLevel) + (1-m.Beta)*m.trend
		m.seasonal[t%s] = m.Gamma*(y[t]-m.level) + (1-m.Gamma)*season
	}
	m.n = len(y)
	return sse
}

// Forecast returns the next h steps after the fitted series, never
// below zero (they are counts).
func (m *HoltWinters) Forecast(h int) []float64 {
	out := make([]float64, h)
	for i := range out {
		step := i + 1
		out[i] = max(0, m.level+float64(step)*m.trend+m.seasonal[(m.n-1+step)%m.Season])
	}
	return out
}

// ProfileForecast is the forecast for a short history, too short for a
// seasonal model (under two days): a level, the median of the last day's
// hourly counts (so one burst does not lift it), plus each hour of the
// day's departure from it, shrunk toward it by how often that hour was
// seen (an hour seen once keeps a third of its departure, twice a half).
// y[0] is at hour of day start (0-23); the h steps follow y's last.
func ProfileForecast(y []float64, start, h int) []float64 {
	level := median(y[max(0, len(y)-24):])
	var sum, seen [24]float64
	for i, v := range y {
		hour := (start + i) % 24
		sum[hour] += v
		seen[hour]++
	}
	out := make([]float64, h)
	for i := range out {
		hour := (start + len(y) + i) % 24
		if seen[hour] == 0 {
			out[i] = level
			continue
		}
		departure := sum[hour]/seen[hour] - level
		out[i] = max(0, level+departure*seen[hour]/(seen[hour]+profileShrink))
	}
	return out
}

// profileShrink is how many observations of the level an hour of the
// day's own observations are weighed against.
const profileShrink = 2

func median(y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(y))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MeanForecast is the baseline: the series' mean for each of h steps.
func MeanForecast(y []float64, h int) []float64 {
	out := make([]float64, h)
	mu := mean(y)
	for i := range out {
		out[i] = mu
	}
	return out
}

// MAE is the mean absolute error of a forecast against what happened.
func MAE(forecast, actual []float64) float64 {
	n := min(len(forecast), len(actual))
	if n == 0 {
		return 0
	}
	var sum float64
	for i := range n {
		sum += math.Abs(forecast[i] - actual[i])
	}
	return sum / float64(n)
}

func mean(y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	var sum float64
	for _, v := range y {
		sum += v
	}
	return sum / float64(len(y))
}
