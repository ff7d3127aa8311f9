package federation

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Server ACLs (m.room.server_acl): a room's servers refuse the PDUs, EDUs
// and requests about it of the servers its ACL denies. An ACL event is
// compiled once and kept by event ID.

// serverACL is a compiled m.room.server_acl content.
type serverACL struct {
	allowIPLiterals bool
	allow, deny     []*regexp.Regexp
}

// allows reports whether the ACL lets server in: the spec's order, on the
// server name without its port: an IP literal while IP literals are not
// allowed is denied, then a name matching deny, then one matching no
// allow.
func (a *serverACL) allows(server string) bool {
	host := server
	if h, _, err := net.SplitHostPort(server); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	if !a.allowIPLiterals && (net.ParseIP(strings.Trim(host, "[]")) != nil) {
		return false
	}
	for _, re := range a.deny {
		if re.MatchString(host) {
			return false
		}
	}
	for _, re := range a.allow {
		if re.MatchString(host) {
			return true
		}
	}
	return false
}

// compileACL compiles an m.room.server_acl content. Entries that are not
// strings are ignored, as the spec asks.
func compileACL(content json.RawMessage) *serverACL {
	var c struct {
		AllowIPLiterals *bool `json:"allow_ip_literals"`
		Allow           []any `json:"allow"`
		Deny            []any `json:"deny"`
	}
	json.Unmarshal(content, &c)
	acl := &serverACL{allowIPLiterals: c.AllowIPLiterals == nil || *c.AllowIPLiterals}
	acl.allow = globs(c.Allow)
	acl.deny = globs(c.Deny)
	return acl
}

func globs(entries []any) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, e := range entries {
		s, ok := e.(string)
		if !ok {
			continue
		}
		var b strings.Builder
		b.WriteString("^")
		for _, r := range strings.ToLower(s) {
			switch r {
			case '*':
				b.WriteString(".*")
			case '?':
				b.WriteString(".")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		b.WriteString("$")
		out = append(out, regexp.MustCompile(b.String()))
	}
	return out
}

// maxACLs bounds the compiled ACLs kept.
const maxACLs = 1024

// aclCache keeps compiled ACLs by the ID of their event.
type aclCache struct {
	mu   sync.Mutex
	acls map[id.EventID]*serverACL
}

func (c *aclCache) get(evID id.EventID, content json.RawMessage) *serverACL {
	c.mu.Lock()
	defer c.mu.Unlock()
	if acl, ok := c.acls[evID]; ok {
		return acl
	}
	if c.acls == nil || len(c.acls) >= maxACLs {
		c.acls = map[id.EventID]*serverACL{}
	}
	acl := compileACL(content)
	c.acls[evID] = acl
	return acl
}

// ServerAllowed reports whether the room's server ACL lets server take
// part; a room without an ACL, or unknown here, allows every server.
func (s *Service) ServerAllowed(ctx context.Context, server string, roomID id.RoomID) bool {
	if s.rooms == nil {
		return true
	}
	ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.server_acl", "")
	if err != nil || ev == nil {
		return true
	}
	return s.acls.get(ev.ID, ev.Content()).allows(server)
}

// checkACL refuses a server the room's ACL denies with 403 M_FORBIDDEN.
func (s *Service) checkACL(ctx context.Context, server string, roomID id.RoomID) error {
	if !s.ServerAllowed(ctx, server, roomID) {
		return mxhttp.Forbidden("server %s is denied by the server ACL of %s", server, roomID)
	}
	return nil
}
