package rooms

import (
	"context"
	"fmt"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
)

// PendingRedactionLifetime is how long a redaction whose target has not
// arrived is remembered: a target that has not come in that time (over
// federation, events arrive late but not that late) most likely never
// will, and the row would be kept for good.
const PendingRedactionLifetime = 7 * 24 * time.Hour

// SweepInterval is how often RunSweeps forgets what has expired.
const SweepInterval = time.Hour

// ExpirePendingRedactions forgets the pending redactions remembered before
// before, and returns how many. Rows from before received_ts existed are
// dated now, so they expire a lifetime after the first sweep.
func (e *Engine) ExpirePendingRedactions(ctx context.Context, before time.Time) (int64, error) {
	var expired int64
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE pending_redactions SET received_ts = $1 WHERE received_ts = 0", time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("date pending redactions: %w", err)
		}
		res, err := tx.Exec(ctx, "DELETE FROM pending_redactions WHERE received_ts < $1", before.UnixMilli())
		if err != nil {
			return fmt.Errorf("expire pending redactions: %w", err)
		}
		expired, _ = res.RowsAffected()
		return nil
	})
	return expired, err
}

// RunSweeps forgets what has expired (pending redactions older than
// PendingRedactionLifetime, events that waited for their auth events
// longer than AwaitingAuthLifetime) at once and then every SweepInterval, until
// ctx ends. Every node runs it, federating or not: a local redaction of
// an unknown event is remembered too.
func (e *Engine) RunSweeps(ctx context.Context) {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		n, err := e.ExpirePendingRedactions(ctx, time.Now().Add(-PendingRedactionLifetime))
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("sweep: pending redactions", "err", err)
		case n > 0:
			e.log.Info("sweep: forgot redactions whose target never arrived", "count", n)
		}
		n, err = e.ExpireAwaitingAuth(ctx, time.Now().Add(-AwaitingAuthLifetime))
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("sweep: events awaiting their auth events", "err", err)
		case n > 0:
			e.log.Info("sweep: forgot events whose auth events never arrived", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
