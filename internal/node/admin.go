package node

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/admin"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/media"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/ratelimit"
)

// The rate of users' reports (POST .../report) with rate limiting on.
const (
	ReportsPerMinute = 10
	ReportsBurst     = 10
)

// RateLimitRules derives the rate limits from the config; nil when rate
// limiting is off.
func RateLimitRules(cfg config.Config) map[string]ratelimit.Rule {
	if !cfg.RateLimit {
		return nil
	}
	return map[string]ratelimit.Rule{
		ratelimit.Login:    {PerMinute: cfg.RateLimitLoginPerMin, Burst: cfg.RateLimitLoginBurst},
		ratelimit.Register: {PerMinute: cfg.RateLimitRegPerMin, Burst: cfg.RateLimitRegBurst},
		ratelimit.Send:     {PerMinute: cfg.RateLimitSendPerMin, Burst: cfg.RateLimitSendBurst},
		ratelimit.Upload:   {PerMinute: cfg.RateLimitUploadPerMin, Burst: cfg.RateLimitUploadBurst},
		// Not a setting: lookups of appservice users and aliases that
		// do not exist yet, which each make a bridge answer.
		ratelimit.AppserviceQuery: {PerMinute: 60, Burst: 20},
		// Not a setting either: users' reports, each posted to a
		// moderators' room.
		ratelimit.Report: {PerMinute: ReportsPerMinute, Burst: ReportsBurst},
	}
}

// adminRoutes builds the admin service (reports, server notices, admin
// API) and the rate limiter, and registers the admin endpoints.
func (n *Node) adminRoutes(mux *http.ServeMux) {
	n.Admin = admin.New(n.DB, n.log, n.Accounts, n.Rooms, admin.Options{
		Version:          Version,
		RoomVersion:      id.RoomVersion(n.cfg.DefaultRoomVersion),
		NoticesLocalpart: n.cfg.ServerNoticesLocalpart,
	})
	if n.AccountData != nil {
		n.Admin.Tags = n.AccountData
	}
	if n.Media != nil {
		n.Admin.Media = mediaAdmin{n.Media}
	}
	if n.Federation != nil {
		n.Admin.Federation = outboxAdmin{n.Federation.Outbox}
	}
	n.Admin.Bridges = bridgesAdmin{n.Bridges}
	n.Admin.OnReport = n.Moderation.ReportToModerators
	n.Admin.Routes(mux)
	n.RateLimit = ratelimit.New(ratelimit.Options{
		Rules: RateLimitRules(n.cfg),
		Identify: func(r *http.Request) ratelimit.Identity {
			tok := mxhttp.AccessToken(r)
			if tok == "" {
				return ratelimit.Identity{}
			}
			sess, err := n.Accounts.AuthenticateRequest(r)
			if err != nil {
				return ratelimit.Identity{}
			}
			return ratelimit.Identity{User: string(sess.UserID), Exempt: sess.IsAdmin || !n.Appservices.RateLimited(sess)}
		},
	})
	// Every credential check (login, each UIA stage, registration tokens)
	// takes from the login buckets of the client IP and of the account.
	n.Accounts.Limiter = n.RateLimit
	// Lookups that reach an appservice take from the requester's bucket.
	n.Appservices.Limiter = n.RateLimit
	// The OAuth pages take from the registration buckets of the client
	// IP for each pending login they start.
	if n.csExtra.oauth != nil {
		n.csExtra.oauth.Limiter = n.RateLimit
	}
}

// protect puts rate limiting and the admin guard (suspended and
// shadow-banned users, blocked rooms) in front of the client API.
func (n *Node) protect(next http.Handler) http.Handler {
	return n.RateLimit.Middleware(n.Admin.Guard(next))
}

// mediaAdmin adapts the media repository to what the admin API needs.
type mediaAdmin struct{ *media.Service }

func (m mediaAdmin) UserMedia(ctx context.Context, user id.UserID, from, limit int) ([]admin.MediaInfo, int, error) {
	page, total, err := m.UserMediaPage(ctx, user, from, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]admin.MediaInfo, 0, len(page))
	for _, md := range page {
		out = append(out, admin.MediaInfo{MediaID: md.MediaID, MediaType: md.ContentType, MediaLength: md.Size,
			UploadName: md.Filename, CreatedTS: md.CreatedTS, QuarantinedBy: string(md.QuarantinedBy)})
	}
	return out, total, nil
}

func (m mediaAdmin) Quarantine(ctx context.Context, server, mediaID string, by id.UserID, on bool) error {
	if on {
		return m.QuarantineBy(ctx, server, mediaID, by)
	}
	return m.Service.Quarantine(ctx, server, mediaID, false)
}

func (m mediaAdmin) Exists(ctx context.Context, server, mediaID string) (bool, error) {
	md, err := m.Get(ctx, server, mediaID)
	return md != nil, err
}
