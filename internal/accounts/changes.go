package accounts

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Account changes reach the running node as storage changes (see
// storage.WatchChanges). Every write that revokes tokens or deactivates an
// account records one in its own transaction. The service that applies
// changes (the node's, once WatchChanges runs) applies its own right after
// the commit: it forgets the cached sessions and runs the hooks (leave the
// rooms, delete the keys). Any other service (the admin CLI's) only records
// them, and the node applies them as soon as they commit, or when it next
// starts.
const (
	changeDeviceDeleted = "accounts.device_deleted"
	changeDeactivated   = "accounts.deactivated"
	changeUserChanged   = "accounts.user_changed" // a flag the sessions carry
)

// accountChange is the payload of an account change.
type accountChange struct {
	UserID      id.UserID   `json:"user_id"`
	DeviceID    id.DeviceID `json:"device_id,omitempty"`
	TokenHashes []string    `json:"token_hashes,omitempty"`
}

// changes collects the changes one write records.
type changes []storage.Change

func (cs *changes) record(ctx context.Context, tx *storage.Tx, topic string, c accountChange) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	ch, err := tx.RecordChange(ctx, topic, string(b))
	if err != nil {
		return err
	}
	*cs = append(*cs, ch)
	return nil
}

// write runs fn in a write transaction, then applies the changes it
// recorded if this service applies changes.
func (s *Service) write(ctx context.Context, fn func(tx *storage.Tx, cs *changes) error) error {
	var cs changes
	if err := s.db.Write(ctx, func(tx *storage.Tx) error { return fn(tx, &cs) }); err != nil {
		return err
	}
	if !s.appliesChanges.Load() {
		return nil
	}
	ids := make([]int64, 0, len(cs))
	for _, c := range cs {
		if err := s.applyChange(ctx, c); err != nil {
			return err
		}
		ids = append(ids, c.ID)
	}
	if err := s.db.ChangesApplied(ctx, ids...); err != nil {
		// Committed and applied; the node applies it once more when
		// it next starts, which does no harm.
		s.log.Warn("delete applied account changes", "err", err)
	}
	return nil
}

// WatchChanges makes this service the one that applies account changes, as
// the node's does: it applies the changes pending now (made by the admin
// CLI while no node ran, or cut short by a crash) before it returns; then,
// until stop, those the CLI makes as soon as they commit, and its own at
// once.
func (s *Service) WatchChanges(ctx context.Context) (stop func()) {
	s.appliesChanges.Store(true)
	return s.db.WatchChanges(ctx, s.applyChange)
}

// HandleChanges makes the service that applies changes (WatchChanges) pass
// those of topic to apply: another package's changes recorded by the admin
// CLI (an appservice reload). Call it before WatchChanges.
func (s *Service) HandleChanges(topic string, apply func(context.Context, storage.Change) error) {
	if s.changeHandlers == nil {
		s.changeHandlers = map[string]func(context.Context, storage.Change) error{}
	}
	s.changeHandlers[topic] = apply
}

// applyChange forgets the cached sessions a change invalidates and runs
// the hooks that finish it.
func (s *Service) applyChange(ctx context.Context, c storage.Change) error {
	if h := s.changeHandlers[c.Topic]; h != nil {
		return h(ctx, c)
	}
	var ac accountChange
	if err := json.Unmarshal([]byte(c.Payload), &ac); err != nil {
		return fmt.Errorf("account change %d (%s): %w", c.ID, c.Topic, err)
	}
	switch c.Topic {
	case changeDeviceDeleted:
		s.forgetTokens(ac.TokenHashes...)
		for _, h := range s.Hooks.DeviceDeleted {
			h(ctx, ac.UserID, ac.DeviceID)
		}
	case changeDeactivated:
		s.forgetUser(ac.UserID)
		for _, h := range s.Hooks.Deactivated {
			h(ctx, ac.UserID)
		}
	case changeUserChanged:
		s.forgetUser(ac.UserID)
	default:
		return fmt.Errorf("account change %d: unknown topic %q", c.ID, c.Topic)
	}
	return nil
}
