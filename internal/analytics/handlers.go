package analytics

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

const adminPrefix = "/_matrixos/admin/v1/analytics"

// Routes registers the admin endpoints, for server admins only:
//
//	GET /_matrixos/admin/v1/analytics[?days=N]                            the node's Report
//	GET /_matrixos/admin/v1/analytics/chart.png[?days=N]                  its chart
//	GET /_matrixos/admin/v1/analytics/rooms/{roomId}[?days=N]             a room's Report
//	GET /_matrixos/admin/v1/analytics/rooms/{roomId}/chart.png[?days=N]   its chart
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+adminPrefix, s.admin(s.getReport))
	mux.HandleFunc("GET "+adminPrefix+"/chart.png", s.admin(s.getChart))
	mux.HandleFunc("GET "+adminPrefix+"/rooms/{roomId}", s.admin(s.getReport))
	mux.HandleFunc("GET "+adminPrefix+"/rooms/{roomId}/chart.png", s.admin(s.getChart))
}

func (s *Service) admin(h func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return s.opts.Accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if !sess.IsAdmin {
			return nil, mxhttp.Forbidden("you are not a server admin")
		}
		return h(w, r)
	})
}

func (s *Service) getReport(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.requestedReport(r)
}

func (s *Service) getChart(w http.ResponseWriter, r *http.Request) (any, error) {
	rep, err := s.requestedReport(r)
	if err != nil {
		return nil, err
	}
	b, err := ChartPNG(rep, ChartTitle(rep))
	if err != nil {
		return nil, err
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
	return nil, nil
}

// ChartTitle names what a report's chart shows.
func ChartTitle(rep *Report) string {
	what := "this node"
	if rep.RoomID != "" {
		what = string(rep.RoomID)
	}
	return "messages in " + what + ", last " + strconv.Itoa(rep.Days) + " days, and the next 24 hours"
}

// requestedReport reads the room (when the path names one) and days.
func (s *Service) requestedReport(r *http.Request) (*Report, error) {
	days := DefaultDays
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDays {
			return nil, mxhttp.InvalidParam("days must be a whole number from 1 to %d", MaxDays)
		}
		days = n
	}
	var roomID id.RoomID
	if r.PathValue("roomId") != "" {
		var err error
		if roomID, err = mxhttp.RoomIDParam(r); err != nil {
			return nil, err
		}
		if err := s.checkRoom(r.Context(), roomID); err != nil {
			return nil, err
		}
	}
	if err := s.CatchUp(r.Context()); err != nil {
		return nil, err
	}
	return s.Report(r.Context(), roomID, days)
}

func (s *Service) checkRoom(ctx context.Context, roomID id.RoomID) error {
	_, err := s.opts.Rooms.Version(ctx, roomID)
	if errors.Is(err, rooms.ErrNoRoom) {
		return mxhttp.NotFound("this node does not know room %s", roomID)
	}
	return err
}
