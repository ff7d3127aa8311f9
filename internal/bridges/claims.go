package bridges

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/appservice"
)

// checkClaims refuses to enable the bridge name when its appservice would
// take over what is not its own: an existing account matching its sender
// or user namespaces that it did not register (a human's, or another
// appservice's: its as_token would act as them), or the sender or an
// exclusive namespace of another registration in the appservices
// directory (a hand-installed mautrix-whatsapp's, say).
func (m *Manager) checkClaims(ctx context.Context, name string) error {
	reg, err := m.claims(name)
	if err != nil {
		return err
	}
	if err := m.checkAccounts(ctx, reg); err != nil {
		return err
	}
	return m.checkRegistrations(name, reg)
}

// claims is the bridge's registration: the one written before, or the one
// Files would write.
func (m *Manager) claims(name string) (*appservice.Registration, error) {
	data, err := os.ReadFile(RegistrationFile(m.opts.DataDir, name))
	if errors.Is(err, os.ErrNotExist) {
		files := Files{DataDir: m.opts.DataDir, ServerName: m.opts.ServerName, Name: name}
		var text string
		text, err = files.Registration("http://127.0.0.1:1").YAML()
		data = []byte(text)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s's registration: %w", name, err)
	}
	reg, err := appservice.ParseRegistration(data)
	if err != nil {
		return nil, fmt.Errorf("bridge %s's registration: %w", name, err)
	}
	return reg, nil
}

// checkAccounts refuses reg when accounts it did not register match its
// sender or user namespaces, naming them.
func (m *Manager) checkAccounts(ctx context.Context, reg *appservice.Registration) error {
	if m.opts.Accounts == nil {
		return nil
	}
	sender := reg.Sender(m.opts.ServerName)
	taken, err := m.opts.Accounts.UsersNotOf(ctx, reg.ID, func(u id.UserID) bool {
		return u == sender || reg.InterestedInUser(u)
	})
	if err != nil {
		return err
	}
	if len(taken) > 0 {
		return fmt.Errorf("%w: bridge %s would take over existing accounts in its namespace, which it did not register: %s",
			ErrInvalid, strings.TrimPrefix(reg.ID, "bridge-"), joinUsers(taken))
	}
	return nil
}

// checkRegistrations refuses reg when another registration in the
// appservices directory has its sender, claims its sender or its users
// or aliases exclusively, or is in reg's namespaces with its own sender.
func (m *Manager) checkRegistrations(name string, reg *appservice.Registration) error {
	others, _ := appservice.LoadDir(appservice.Dir(m.opts.DataDir)) // a file that does not load claims nothing
	server := m.opts.ServerName
	sender := reg.Sender(server)
	ghost := id.NewUserID(name+"_a", server)
	alias := id.RoomAlias("#" + name + "_a:" + server)
	for _, other := range others {
		if other.ID == reg.ID {
			continue
		}
		if other.SenderLocalpart == reg.SenderLocalpart ||
			other.ExclusiveUser(sender) || other.ExclusiveUser(ghost) || other.ExclusiveAlias(alias) ||
			reg.InterestedInUser(other.Sender(server)) {
			return fmt.Errorf("%w: bridge %s's sender or namespaces overlap those of appservice %s (%s)", ErrInvalid, name, other.ID, other.File)
		}
	}
	return nil
}

// joinUsers lists user IDs, the first ten and a count of the others.
func joinUsers(users []id.UserID) string {
	const shown = 10
	parts := make([]string, 0, shown+1)
	for i, u := range users {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(users)-shown))
			break
		}
		parts = append(parts, string(u))
	}
	return strings.Join(parts, ", ")
}
