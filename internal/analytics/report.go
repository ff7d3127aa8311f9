package analytics

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"
)

const (
	// DefaultDays and MaxDays bound a report's window.
	DefaultDays = 14
	MaxDays     = 90
	// historyDays is how much hourly history the forecast is fitted to.
	historyDays = 28
	// ForecastHours is how far ahead a report forecasts.
	ForecastHours = 24
	// topMembers is how many of the most active members a report names.
	topMembers = 10
)

// Report is the figures of a room, or of the whole node when RoomID is
// empty, over the Days before the current hour's end.
type Report struct {
	RoomID id.RoomID `json:"room_id,omitempty"`
	Days   int       `json:"days"`
	// From and To bound the window (Unix milliseconds, To exclusive, the
	// end of the current hour).
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Messages is the total, Hours the messages of each hour of the
	// window, oldest first.
	Messages int64   `json:"messages"`
	Hours    []int64 `json:"hours"`
	// BusiestHours counts messages by weekday (0 is Sunday) and hour of
	// the day, UTC; Busiest is the busiest such slot.
	BusiestHours [7][24]int64 `json:"busiest_hours"`
	Busiest      *Slot        `json:"busiest,omitempty"`
	// Replies is how many messages answered another member's message
	// within a day; MedianReplySeconds their median delay (absent
	// without replies).
	Replies            int64    `json:"replies"`
	MedianReplySeconds *float64 `json:"median_reply_seconds,omitempty"`
	// ActiveMembers is how many senders posted in the window, Top the
	// most active of them.
	ActiveMembers int            `json:"active_members"`
	Top           []MemberCount  `json:"top_members"`
	Forecast      ForecastResult `json:"forecast"`
}

// Slot is a weekday and hour of the day (UTC).
type Slot struct {
	Weekday  time.Weekday `json:"weekday"`
	Hour     int          `json:"hour"`
	Messages int64        `json:"messages"`
}

// MemberCount is a member's messages in the window.
type MemberCount struct {
	UserID   id.UserID `json:"user_id"`
	Messages int64     `json:"messages"`
}

// ForecastResult is the messages expected in each of the next hours,
// the model that gave them (ModelHoltWinters, ModelProfile, or ModelNone
// with no hours) and how much history it was fitted to.
type ForecastResult struct {
	Model        string    `json:"model"`
	HistoryHours int       `json:"history_hours"`
	Hours        []float64 `json:"hours"`
	Alpha        float64   `json:"alpha,omitempty"`
	Beta         float64   `json:"beta,omitempty"`
	Gamma        float64   `json:"gamma,omitempty"`
}

// Report computes the figures of roomID (the node's when empty) over
// days. It reads the bucket tables only.
func (s *Service) Report(ctx context.Context, roomID id.RoomID, days int) (*Report, error) {
	if days <= 0 {
		days = DefaultDays
	}
	days = min(days, MaxDays)
	end := hourOf(s.opts.Now().UnixMilli()) + 1
	start := end - int64(days*24)
	rep := &Report{RoomID: roomID, Days: days, From: start * 3_600_000, To: end * 3_600_000}
	history := end - historyDays*24
	hours, err := s.hourly(ctx, roomID, min(start, history), end)
	if err != nil {
		return nil, err
	}
	rep.Hours = make([]int64, end-start)
	for i, n := range hours[len(hours)-len(rep.Hours):] {
		h := start + int64(i)
		rep.Hours[i] = n
		rep.Messages += n
		t := time.Unix(h*3600, 0).UTC()
		rep.BusiestHours[t.Weekday()][t.Hour()] += n
	}
	rep.Busiest = busiest(rep.BusiestHours)
	rep.Forecast = forecast(hours[len(hours)-int(end-history):], int(end%24))
	if err := s.replies(ctx, rep, start/24, end/24+1); err != nil {
		return nil, err
	}
	if err := s.members(ctx, rep, start/24, end/24+1); err != nil {
		return nil, err
	}
	return rep, nil
}

// hourly reads messages per hour in [from, to), zeros included.
func (s *Service) hourly(ctx context.Context, roomID id.RoomID, from, to int64) ([]int64, error) {
	q, args := `SELECT hour, messages FROM analytics_hours WHERE room_id = $1 AND hour >= $2 AND hour < $3`, []any{roomID, from, to}
	if roomID == "" {
		q, args = `SELECT hour, SUM(messages) FROM analytics_hours WHERE hour >= $1 AND hour < $2 GROUP BY hour`, []any{from, to}
	}
	rows, err := s.opts.DB.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read hourly messages: %w", err)
	}
	defer rows.Close()
	out := make([]int64, to-from)
	for rows.Next() {
		var h, n int64
		if err := rows.Scan(&h, &n); err != nil {
			return nil, fmt.Errorf("read hourly messages: %w", err)
		}
		out[h-from] = n
	}
	return out, rows.Err()
}

func (s *Service) replies(ctx context.Context, rep *Report, fromDay, toDay int64) error {
	q, args := `SELECT bin, SUM(replies) FROM analytics_replies WHERE room_id = $1 AND day >= $2 AND day < $3 GROUP BY bin`, []any{rep.RoomID, fromDay, toDay}
	if rep.RoomID == "" {
		q, args = `SELECT bin, SUM(replies) FROM analytics_replies WHERE day >= $1 AND day < $2 GROUP BY bin`, []any{fromDay, toDay}
	}
	rows, err := s.opts.DB.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read reply delays: %w", err)
	}
	defer rows.Close()
	bins := map[int]int64{}
	for rows.Next() {
		var bin int
		var n int64
		if err := rows.Scan(&bin, &n); err != nil {
			return fmt.Errorf("read reply delays: %w", err)
		}
		bins[bin] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read reply delays: %w", err)
	}
	if median, n, ok := medianOf(bins); ok {
		rep.MedianReplySeconds, rep.Replies = &median, n
	}
	return nil
}

func (s *Service) members(ctx context.Context, rep *Report, fromDay, toDay int64) error {
	q, args := `SELECT sender, SUM(messages) FROM analytics_senders WHERE room_id = $1 AND day >= $2 AND day < $3 GROUP BY sender`, []any{rep.RoomID, fromDay, toDay}
	if rep.RoomID == "" {
		q, args = `SELECT sender, SUM(messages) FROM analytics_senders WHERE day >= $1 AND day < $2 GROUP BY sender`, []any{fromDay, toDay}
	}
	rows, err := s.opts.DB.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read active members: %w", err)
	}
	defer rows.Close()
	var all []MemberCount
	for rows.Next() {
		var m MemberCount
		if err := rows.Scan(&m.UserID, &m.Messages); err != nil {
			return fmt.Errorf("read active members: %w", err)
		}
		all = append(all, m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read active members: %w", err)
	}
	slices.SortFunc(all, func(a, b MemberCount) int {
		if a.Messages != b.Messages {
			return cmp.Compare(b.Messages, a.Messages)
		}
		return cmp.Compare(a.UserID, b.UserID)
	})
	rep.ActiveMembers = len(all)
	rep.Top = all[:min(len(all), topMembers)]
	if rep.Top == nil {
		rep.Top = []MemberCount{}
	}
	return nil
}

func busiest(grid [7][24]int64) *Slot {
	var best *Slot
	for d := range grid {
		for h, n := range grid[d] {
			if n > 0 && (best == nil || n > best.Messages) {
				best = &Slot{Weekday: time.Weekday(d), Hour: h, Messages: n}
			}
		}
	}
	return best
}

// Forecast models, as ForecastResult.Model names them.
const (
	ModelHoltWinters = "holt-winters-additive-daily"
	ModelProfile     = "hour-of-day-profile"
	ModelNone        = "not-enough-history"
)

// Forecast thresholds: a seasonal model needs two days of history, any
// forecast six hours.
const (
	seasonalHistoryHours = 48
	minHistoryHours      = 6
)

// forecast fits a model to the hourly history from the room's first
// active hour (history ends at the hour before endHour, an hour of the
// day): Holt-Winters with a daily season when there are two days of it,
// an hour-of-day profile shrunk toward the median (ProfileForecast) from
// six hours, and none below that: with so little history any forecast
// would only repeat it.
func forecast(history []int64, endHour int) ForecastResult {
	first := slices.IndexFunc(history, func(n int64) bool { return n > 0 })
	if first < 0 {
		return ForecastResult{Model: ModelNone}
	}
	y := make([]float64, len(history)-first)
	for i, n := range history[first:] {
		y[i] = float64(n)
	}
	switch {
	case len(y) >= seasonalHistoryHours:
		m, _ := FitHoltWinters(y, 24)
		return ForecastResult{Model: ModelHoltWinters, HistoryHours: len(y), Hours: m.Forecast(ForecastHours),
			Alpha: m.Alpha, Beta: m.Beta, Gamma: m.Gamma}
	case len(y) >= minHistoryHours:
		start := ((endHour-len(y))%24 + 24) % 24
		return ForecastResult{Model: ModelProfile, HistoryHours: len(y), Hours: ProfileForecast(y, start, ForecastHours)}
	}
	return ForecastResult{Model: ModelNone, HistoryHours: len(y)}
}
