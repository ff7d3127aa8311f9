package admin

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// Report kinds.
const (
	KindEvent = "event"
	KindRoom  = "room"
	KindUser  = "user"
)

const maxReasonLen = 4096

// Report is a stored content report.
type Report struct {
	ID         int64
	Kind       string
	ReceivedTS int64
	Reporter   id.UserID
	RoomID     id.RoomID
	EventID    id.EventID
	TargetUser id.UserID // the reported user, or the reported event's sender
	Reason     string
	Score      *int64
}

func (s *Service) reportRoutes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	a := s.accounts.Auth
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/report/{eventId}", a(s.reportEvent))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/report", a(s.reportRoom))
	mux.HandleFunc("POST "+v3+"/users/{userId}/report", a(s.reportUser))

	const adm = "/_synapse/admin/v1"
	mux.HandleFunc("GET "+adm+"/event_reports", s.admin(s.listReports(KindEvent)))
	mux.HandleFunc("GET "+adm+"/event_reports/{reportId}", s.admin(s.getReport(KindEvent)))
	mux.HandleFunc("DELETE "+adm+"/event_reports/{reportId}", s.admin(s.deleteReport(KindEvent)))
	// Room and user reports, listed like event reports.
	mux.HandleFunc("GET "+adm+"/room_reports", s.admin(s.listReports(KindRoom)))
	mux.HandleFunc("GET "+adm+"/room_reports/{reportId}", s.admin(s.getReport(KindRoom)))
	mux.HandleFunc("DELETE "+adm+"/room_reports/{reportId}", s.admin(s.deleteReport(KindRoom)))
	mux.HandleFunc("GET "+adm+"/user_reports", s.admin(s.listReports(KindUser)))
	mux.HandleFunc("GET "+adm+"/user_reports/{reportId}", s.admin(s.getReport(KindUser)))
	mux.HandleFunc("DELETE "+adm+"/user_reports/{reportId}", s.admin(s.deleteReport(KindUser)))
}

// AddReport stores a report and returns its ID.
func (s *Service) AddReport(ctx context.Context, rep Report) (int64, error) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(id), 0) + 1 FROM reports").Scan(&rep.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO reports (id, kind, received_ts, reporter, room_id, event_id, target_user, reason, score)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			rep.ID, rep.Kind, nowMS(), rep.Reporter, rep.RoomID, rep.EventID, rep.TargetUser, rep.Reason, rep.Score)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store report: %w", err)
	}
	s.log.Info("content reported", "kind", rep.Kind, "report_id", rep.ID, "reporter", rep.Reporter,
		"room_id", rep.RoomID, "event_id", rep.EventID, "user_id", rep.TargetUser)
	if s.OnReport != nil {
		s.OnReport(ctx, rep)
	}
	return rep.ID, nil
}

type reportRequest struct {
	Reason *string          `json:"reason"`
	Score  *json.RawMessage `json:"score"`
}

func decodeReport(r *http.Request, reasonRequired bool) (string, *int64, error) {
	var req reportRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return "", nil, err
	}
	if req.Reason == nil && reasonRequired {
		return "", nil, mxhttp.MissingParam("missing reason")
	}
	reason := ""
	if req.Reason != nil {
		reason = *req.Reason
	}
	if len(reason) > maxReasonLen {
		return "", nil, mxhttp.InvalidParam("reason is too long")
	}
	var score *int64
	if req.Score != nil && string(*req.Score) != "null" {
		// score was removed in v1.18; older clients still send it.
		var n int64
		if err := json.Unmarshal(*req.Score, &n); err != nil || n < -100 || n > 0 {
			return "", nil, mxhttp.InvalidParam("score must be an integer between -100 and 0")
		}
		score = &n
	}
	return reason, score, nil
}

// reportEvent stores a report on an event the reporter can see. Whether
// the room or event exists is not disclosed: the answer is always {}.
func (s *Service) reportEvent(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	evID := id.EventID(r.PathValue("eventId"))
	reason, score, err := decodeReport(r, false)
	if err != nil {
		return nil, err
	}
	if s.rooms.Membership(sess.UserID, roomID) != "join" {
		return mxhttp.Empty, nil
	}
	ev, err := s.rooms.Event(r.Context(), evID)
	if err != nil || ev.RoomID != roomID {
		return mxhttp.Empty, nil
	}
	_, err = s.AddReport(r.Context(), Report{Kind: KindEvent, Reporter: sess.UserID, RoomID: roomID, EventID: evID,
		TargetUser: ev.Sender, Reason: reason, Score: score})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) reportRoom(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	reason, score, err := decodeReport(r, true)
	if err != nil {
		return nil, err
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return mxhttp.Empty, nil
	}
	if _, err := s.AddReport(r.Context(), Report{Kind: KindRoom, Reporter: sess.UserID, RoomID: roomID, Reason: reason, Score: score}); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) reportUser(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	target := id.UserID(r.PathValue("userId"))
	_, hs, err := target.Parse()
	if err != nil {
		return nil, mxhttp.InvalidParam("invalid user ID %q", target)
	}
	reason, score, err := decodeReport(r, true)
	if err != nil {
		return nil, err
	}
	if hs == s.serverName {
		if _, ok, err := s.accounts.GetUser(r.Context(), target); err != nil {
			return nil, err
		} else if !ok {
			return mxhttp.Empty, nil
		}
	}
	if _, err := s.AddReport(r.Context(), Report{Kind: KindUser, Reporter: sess.UserID, TargetUser: target, Reason: reason, Score: score}); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

const reportColumns = "id, kind, received_ts, reporter, room_id, event_id, target_user, reason, score"

func scanReport(scan func(...any) error) (*Report, error) {
	var rep Report
	var score sql.NullInt64
	if err := scan(&rep.ID, &rep.Kind, &rep.ReceivedTS, &rep.Reporter, &rep.RoomID, &rep.EventID, &rep.TargetUser, &rep.Reason, &score); err != nil {
		return nil, err
	}
	if score.Valid {
		rep.Score = &score.Int64
	}
	return &rep, nil
}

// Reports lists the reports of one kind, oldest first.
func (s *Service) Reports(ctx context.Context, kind string) ([]*Report, error) {
	rows, err := s.db.Query(ctx, "SELECT "+reportColumns+" FROM reports WHERE kind = $1 ORDER BY id", kind)
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	defer rows.Close()
	var out []*Report
	for rows.Next() {
		rep, err := scanReport(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("list reports: %w", err)
		}
		out = append(out, rep)
	}
	return out, rows.Err()
}

func (s *Service) reportByID(r *http.Request, kind string) (*Report, error) {
	n, err := strconv.ParseInt(r.PathValue("reportId"), 10, 64)
	if err != nil || n <= 0 {
		return nil, mxhttp.InvalidParam("the report ID must be a positive integer")
	}
	rep, err := scanReport(s.db.QueryRow(r.Context(), "SELECT "+reportColumns+" FROM reports WHERE id = $1 AND kind = $2", n, kind).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxhttp.NotFound("report not found")
	}
	if err != nil {
		return nil, fmt.Errorf("load report: %w", err)
	}
	return rep, nil
}

// reportJSON renders a report as Synapse's admin API does.
func (s *Service) reportJSON(ctx context.Context, rep *Report) map[string]any {
	m := map[string]any{
		"id":          rep.ID,
		"received_ts": rep.ReceivedTS,
		"user_id":     rep.Reporter,
		"reason":      orNull(rep.Reason),
		"score":       rep.Score,
	}
	if rep.RoomID != "" {
		m["room_id"] = rep.RoomID
		name, alias := s.roomNameAlias(ctx, rep.RoomID)
		m["name"], m["canonical_alias"] = orNull(name), orNull(alias)
	}
	switch rep.Kind {
	case KindEvent:
		m["event_id"] = rep.EventID
		m["sender"] = rep.TargetUser
	case KindUser:
		m["target_user_id"] = rep.TargetUser
	}
	return m
}

func (s *Service) roomNameAlias(ctx context.Context, roomID id.RoomID) (name, alias string) {
	if ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.name", ""); err == nil && ev != nil {
		var c struct{ Name string }
		json.Unmarshal(ev.Content(), &c)
		name = c.Name
	}
	if ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.canonical_alias", ""); err == nil && ev != nil {
		var c struct{ Alias string }
		json.Unmarshal(ev.Content(), &c)
		alias = c.Alias
	}
	return name, alias
}

// listReports answers GET /event_reports (and the room and user
// variants): from, limit, dir (b: newest first, the default), user_id
// (reporter), room_id, event_sender_user_id.
func (s *Service) listReports(kind string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		from, limit, err := page(r, 100)
		if err != nil {
			return nil, err
		}
		q := r.URL.Query()
		dir := q.Get("dir")
		if dir != "" && dir != "f" && dir != "b" {
			return nil, mxhttp.InvalidParam("dir must be f or b")
		}
		all, err := s.Reports(r.Context(), kind)
		if err != nil {
			return nil, err
		}
		var matched []*Report
		for _, rep := range all {
			if u := q.Get("user_id"); u != "" && string(rep.Reporter) != u {
				continue
			}
			if rm := q.Get("room_id"); rm != "" && string(rep.RoomID) != rm {
				continue
			}
			if u := q.Get("event_sender_user_id"); u != "" && string(rep.TargetUser) != u {
				continue
			}
			matched = append(matched, rep)
		}
		if dir != "f" {
			for i, j := 0, len(matched)-1; i < j; i, j = i+1, j-1 {
				matched[i], matched[j] = matched[j], matched[i]
			}
		}
		part, next := window(matched, from, limit)
		list := make([]map[string]any, 0, len(part))
		for _, rep := range part {
			list = append(list, s.reportJSON(r.Context(), rep))
		}
		resp := map[string]any{kind + "_reports": list, "total": len(matched)}
		if next >= 0 {
			resp["next_token"] = next
		}
		return resp, nil
	}
}

func (s *Service) getReport(kind string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		rep, err := s.reportByID(r, kind)
		if err != nil {
			return nil, err
		}
		m := s.reportJSON(r.Context(), rep)
		if kind == KindEvent {
			m["event_json"] = nil
			if ev, err := s.rooms.Event(r.Context(), rep.EventID); err == nil {
				m["event_json"] = json.RawMessage(ev.JSON)
			}
		}
		return m, nil
	}
}

func (s *Service) deleteReport(kind string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		rep, err := s.reportByID(r, kind)
		if err != nil {
			return nil, err
		}
		err = s.db.Write(r.Context(), func(tx *storage.Tx) error {
			_, err := tx.Exec(r.Context(), "DELETE FROM reports WHERE id = $1", rep.ID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("delete report: %w", err)
		}
		return mxhttp.Empty, nil
	}
}
