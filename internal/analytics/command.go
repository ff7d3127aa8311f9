package analytics

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/assistant"
)

// Commands are the assistant's "stats" and "forecast" commands for the
// room they are asked in; any member may ask (the figures are the
// room's metadata, which its members see anyway).
func (s *Service) Commands() []assistant.Command {
	return []assistant.Command{statsCommand{s}, forecastCommand{s}}
}

type statsCommand struct{ s *Service }

func (statsCommand) Name() string { return "stats" }
func (statsCommand) Help() string {
	return "stats [days]: this room's activity, busiest hour, reply times and active members (default 14 days)"
}

func (c statsCommand) Run(ctx context.Context, room id.RoomID, _ id.UserID, args string) (assistant.Reply, error) {
	rep, err := c.s.commandReport(ctx, room, args)
	if err != nil {
		return assistant.Reply{}, err
	}
	return assistant.Reply{Text: Text(rep)}, nil
}

type forecastCommand struct{ s *Service }

func (forecastCommand) Name() string { return "forecast" }
func (forecastCommand) Help() string {
	return "forecast [days]: this room's expected activity over the next 24 hours, with a chart of the last days (default 7)"
}

func (c forecastCommand) Run(ctx context.Context, room id.RoomID, _ id.UserID, args string) (assistant.Reply, error) {
	if strings.TrimSpace(args) == "" {
		args = "7"
	}
	rep, err := c.s.commandReport(ctx, room, args)
	if err != nil {
		return assistant.Reply{}, err
	}
	png, err := ChartPNG(rep, "messages per hour, last "+strconv.Itoa(rep.Days)+" days; forecast: "+ModelLabel(rep.Forecast))
	if err != nil {
		return assistant.Reply{}, err
	}
	return assistant.Reply{Text: ForecastText(rep),
		File: &assistant.File{Name: "forecast.png", MimeType: "image/png", Data: png, Width: chartWidth, Height: chartHeight}}, nil
}

// commandReport counts what was committed so far and reports on the
// room over the days args names.
func (s *Service) commandReport(ctx context.Context, room id.RoomID, args string) (*Report, error) {
	days := DefaultDays
	if a := strings.TrimSpace(args); a != "" {
		n, err := strconv.Atoi(strings.TrimSuffix(a, "d"))
		if err != nil || n < 1 || n > MaxDays {
			return nil, fmt.Errorf("days must be a whole number from 1 to %d", MaxDays)
		}
		days = n
	}
	if err := s.CatchUp(ctx); err != nil {
		return nil, err
	}
	return s.Report(ctx, room, days)
}
