package telegram

import (
	"context"
	"fmt"

	"github.com/gotd/td/telegram/updates"
)

// sessionStorage keeps the gotd session in the login's metadata.
type sessionStorage struct{ client *Client }

func (s *sessionStorage) LoadSession(context.Context) ([]byte, error) {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	return s.client.meta().Session, nil
}

func (s *sessionStorage) StoreSession(ctx context.Context, data []byte) error {
	return s.client.update(ctx, func(m *UserLoginMetadata) bool {
		m.Session = data
		return true
	})
}

// stateStorage keeps the update state (pts, qts, date, seq) in the login's
// metadata, so a restarted bridge asks getDifference from where it stopped.
// Each channel's pts and access hash are kept too (channels.go).
type stateStorage struct{ client *Client }

var _ updates.StateStorage = (*stateStorage)(nil)

func (s *stateStorage) GetState(_ context.Context, _ int64) (updates.State, bool, error) {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	m := s.client.meta()
	return updates.State{Pts: m.Pts, Qts: m.Qts, Date: m.Date, Seq: m.Seq}, m.Pts != 0 || m.Date != 0, nil
}

func (s *stateStorage) update(ctx context.Context, f func(*UserLoginMetadata)) error {
	return s.client.update(ctx, func(m *UserLoginMetadata) bool {
		f(m)
		return true
	})
}

func (s *stateStorage) SetState(ctx context.Context, _ int64, st updates.State) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Pts, m.Qts, m.Date, m.Seq = st.Pts, st.Qts, st.Date, st.Seq })
}

func (s *stateStorage) SetPts(ctx context.Context, _ int64, pts int) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Pts = pts })
}

func (s *stateStorage) SetQts(ctx context.Context, _ int64, qts int) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Qts = qts })
}

func (s *stateStorage) SetDate(ctx context.Context, _ int64, date int) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Date = date })
}

func (s *stateStorage) SetSeq(ctx context.Context, _ int64, seq int) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Seq = seq })
}

func (s *stateStorage) SetDateSeq(ctx context.Context, _ int64, date, seq int) error {
	return s.update(ctx, func(m *UserLoginMetadata) { m.Date, m.Seq = date, seq })
}

// update changes the login's metadata with f and, if f reports a change,
// saves it to the bridge's database. tc.mu is held throughout: gotd's
// callbacks change the metadata from their own goroutines, and the save
// serialises it, so a change must never run during another's save.
func (tc *Client) update(ctx context.Context, f func(*UserLoginMetadata) bool) error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if !f(tc.meta()) {
		return nil
	}
	if err := tc.login.Save(ctx); err != nil {
		return fmt.Errorf("saving the Telegram login: %w", err)
	}
	return nil
}

// maxAccessHashes bounds the access hashes a login keeps; past it, one
// kept hash is dropped for each new one (that user is found again by the
// next update naming them).
const maxAccessHashes = 10000

// rememberAccessHash keeps a user's access hash and reports whether it
// was new.
func (m *UserLoginMetadata) rememberAccessHash(user, hash int64) bool {
	if m.AccessHashes[user] == hash {
		return false
	}
	if m.AccessHashes == nil {
		m.AccessHashes = map[int64]int64{}
	}
	if _, known := m.AccessHashes[user]; !known && len(m.AccessHashes) >= maxAccessHashes {
		for old := range m.AccessHashes {
			delete(m.AccessHashes, old)
			break
		}
	}
	m.AccessHashes[user] = hash
	return true
}
