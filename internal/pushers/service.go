package pushers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/push"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Options configure the service; zero values take the defaults.
type Options struct {
	// AllowPrivateNetworks lists CIDR ranges that push gateways may be in
	// although they are loopback, private or otherwise special.
	AllowPrivateNetworks []string
	// QueueSize bounds the deliveries waiting to be sent (default 4096);
	// beyond it new deliveries are dropped and logged.
	QueueSize int
	// Workers is how many deliveries are sent at once (default 4).
	Workers int
	// Retries is how many times a failed delivery is tried again
	// (default 5), after Backoff, then twice that, and so on.
	Retries int
	// Backoff is the first retry's delay (default 2s).
	Backoff time.Duration
	// Timeout bounds one request to a gateway (default 10s).
	Timeout time.Duration
	// KeepNotifications is how long /notifications remembers a
	// notification (default 30 days).
	KeepNotifications time.Duration
}

// Service owns pushers, the notification list and push delivery.
type Service struct {
	db    *storage.DB
	log   *slog.Logger
	acc   *accounts.Service
	rooms *rooms.Engine
	push  *push.Service
	opts  Options
	guard *netguard.Guard
	http  *http.Client

	mu     sync.RWMutex
	byUser map[id.UserID][]*Pusher

	queue   chan *delivery
	observe atomic.Pointer[func(outcome)] // hears of each delivery step; see report
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New returns the service; call Load, then Start.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine, pu *push.Service, opts Options) (*Service, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 2 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.KeepNotifications <= 0 {
		opts.KeepNotifications = 30 * 24 * time.Hour
	}
	guard, err := netguard.New(opts.AllowPrivateNetworks)
	if err != nil {
		return nil, fmt.Errorf("pushers: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		db: db, log: log, acc: acc, rooms: eng, push: pu, opts: opts, guard: guard,
		http:   guard.Client(netguard.ClientOptions{Timeout: opts.Timeout, MaxRedirects: -1}),
		byUser: map[id.UserID][]*Pusher{},
		queue:  make(chan *delivery, opts.QueueSize),
		ctx:    ctx, cancel: cancel,
	}, nil
}

// Load reads the stored pushers.
func (s *Service) Load(ctx context.Context) error {
	m, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.byUser = m
	s.mu.Unlock()
	return nil
}

// Start runs the delivery workers and the notification pruner.
func (s *Service) Start() {
	for range s.opts.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.pruner()
}

// Stop ends delivery; queued and pending retries are dropped.
func (s *Service) Stop() {
	s.cancel()
	s.wg.Wait()
}

// OnDeviceDeleted removes the pushers the device created; it suits
// accounts.Hooks.DeviceDeleted.
func (s *Service) OnDeviceDeleted(ctx context.Context, user id.UserID, device id.DeviceID) {
	if err := s.remove(ctx, user, func(p *Pusher) bool { return p.device == device }); err != nil {
		s.log.Warn("remove pushers of deleted device", "user_id", user, "device_id", device, "err", err)
	}
}

// OnDeactivated removes all the user's pushers; it suits
// accounts.Hooks.Deactivated.
func (s *Service) OnDeactivated(ctx context.Context, user id.UserID) {
	if err := s.remove(ctx, user, nil); err != nil {
		s.log.Warn("remove pushers of deactivated user", "user_id", user, "err", err)
	}
}

// pruner forgets old notifications once an hour.
func (s *Service) pruner() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			cutoff := time.Now().Add(-s.opts.KeepNotifications)
			err := s.db.Write(s.ctx, func(tx *storage.Tx) error {
				_, err := tx.Exec(s.ctx, "DELETE FROM push_notifications WHERE ts < $1", cutoff.UnixMilli())
				return err
			})
			if err == nil {
				err = s.push.Prune(s.ctx, cutoff)
			}
			if err != nil && s.ctx.Err() == nil {
				s.log.Warn("prune notifications", "err", err)
			}
		}
	}
}
