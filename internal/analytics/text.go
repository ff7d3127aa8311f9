package analytics

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Text describes a report in a few lines, for the assistant's answer.
func Text(rep *Report) string {
	var b strings.Builder
	what := "this node"
	if rep.RoomID != "" {
		what = "this room"
	}
	fmt.Fprintf(&b, "Last %d days in %s: %d messages from %d members", rep.Days, what, rep.Messages, rep.ActiveMembers)
	if len(rep.Top) > 0 {
		names := make([]string, 0, 3)
		for _, m := range rep.Top[:min(3, len(rep.Top))] {
			names = append(names, fmt.Sprintf("%s (%d)", m.UserID, m.Messages))
		}
		fmt.Fprintf(&b, "; most active: %s", strings.Join(names, ", "))
	}
	b.WriteString(".\n")
	if rep.Busiest != nil {
		fmt.Fprintf(&b, "Busiest hour: %s %02d:00 UTC (%d messages).\n", rep.Busiest.Weekday, rep.Busiest.Hour, rep.Busiest.Messages)
	}
	if rep.MedianReplySeconds != nil {
		d := time.Duration(*rep.MedianReplySeconds * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(&b, "Median reply time: %s over %d replies.\n", d, rep.Replies)
	}
	b.WriteString(ForecastText(rep))
	return b.String()
}

// ForecastText describes a report's forecast in one line, with the
// model and the history it was fitted to.
func ForecastText(rep *Report) string {
	f := rep.Forecast
	if len(f.Hours) == 0 {
		return fmt.Sprintf("Next 24 hours: no forecast, not enough history yet: %s (a forecast needs %d).\n",
			hoursText(f.HistoryHours), minHistoryHours)
	}
	var total float64
	for _, v := range f.Hours {
		total += v
	}
	peak := slices.Index(f.Hours, slices.Max(f.Hours))
	peakAt := time.UnixMilli(rep.To).UTC().Add(time.Duration(peak) * time.Hour)
	return fmt.Sprintf("Next 24 hours: about %.0f messages, busiest around %02d:00 UTC (%s).\n",
		total, peakAt.Hour(), ModelText(f))
}

// ModelText names a forecast's model and the history it was fitted to,
// for the answer and the chart.
func ModelText(f ForecastResult) string {
	switch f.Model {
	case ModelHoltWinters:
		return fmt.Sprintf("a Holt-Winters model with a daily season, fitted to %d hours of history", f.HistoryHours)
	case ModelProfile:
		return fmt.Sprintf("an hour-of-day profile shrunk toward the median, from %d hours of history; a seasonal model needs %d",
			f.HistoryHours, seasonalHistoryHours)
	}
	return "no forecast: not enough history yet, " + hoursText(f.HistoryHours)
}

// hoursText is "1 hour" or "n hours".
func hoursText(n int) string {
	if n == 1 {
		return "1 hour"
	}
	return fmt.Sprintf("%d hours", n)
}

// ModelLabel is ModelText in a few words, for the chart's title.
func ModelLabel(f ForecastResult) string {
	switch f.Model {
	case ModelHoltWinters:
		return fmt.Sprintf("Holt-Winters, %d h of history", f.HistoryHours)
	case ModelProfile:
		return fmt.Sprintf("hour-of-day profile, %d h of history", f.HistoryHours)
	}
	return fmt.Sprintf("none, only %d h of history", f.HistoryHours)
}
