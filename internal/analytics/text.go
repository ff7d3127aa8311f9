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

// ForecastText describes a report's forecast in one line.
func ForecastText(rep *Report) string {
	var total float64
	for _, v := range rep.Forecast.Hours {
		total += v
	}
	peak := 0
	if len(rep.Forecast.Hours) > 0 {
		peak = slices.Index(rep.Forecast.Hours, slices.Max(rep.Forecast.Hours))
	}
	peakAt := time.UnixMilli(rep.To).UTC().Add(time.Duration(peak) * time.Hour)
	model := "a Holt-Winters model with a daily season"
	if rep.Forecast.Model != "holt-winters-additive-daily" {
		model = "the mean (less than two days of history)"
	}
	return fmt.Sprintf("Next 24 hours: about %.0f messages, busiest around %02d:00 UTC (%s fitted to %d hours of history).\n",
		total, peakAt.Hour(), model, rep.Forecast.HistoryHours)
}
