package bridges

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"maunium.net/go/mautrix/bridgev2/status"
)

// The states of a supervised bridge.
const (
	StateStarting = "starting" // running, not yet connected to the node
	StateRunning  = "running"
	StateBackoff  = "backoff" // failed; waiting to start again
	StateStopped  = "stopped"
)

// healthyRun is how long a run must last for its end not to count toward
// the backoff: a bridge that ran this long starts again after the minimum.
const healthyRun = time.Minute

// runFunc runs a bridge once: it returns when ctx is done (nil) or the
// bridge fails (the error). It calls started once the bridge is up, and
// onState with each bridge state the bridge reports.
type runFunc func(ctx context.Context, log io.Writer, started func(), onState func(status.BridgeState)) error

// health is what the supervisor knows of a bridge's state. The
// supervisor keeps a copy in the bridge's status.json, for the admin CLI.
type health struct {
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
	// BridgeState is the last state bridgev2 reported ("CONNECTED", ...).
	BridgeState string `json:"bridge_state,omitempty"`
}

// statusFile is the copy of a bridge's health in its directory.
const statusFile = "status.json"

// readHealth reads the health a supervisor last wrote in dir.
func readHealth(dir string) (health, bool) {
	data, err := os.ReadFile(filepath.Join(dir, statusFile))
	if err != nil {
		return health{}, false
	}
	var h health
	if json.Unmarshal(data, &h) != nil {
		return health{}, false
	}
	return h, true
}

// writeHealth replaces the copy of the health in dir.
func writeHealth(dir string, h health) {
	data, err := json.Marshal(h)
	if err != nil {
		return
	}
	tmp := filepath.Join(dir, statusFile+".tmp")
	if os.WriteFile(tmp, data, 0o600) == nil {
		os.Rename(tmp, filepath.Join(dir, statusFile))
	}
}

// supervisor runs one bridge until stopped: it starts it again after each
// failure, waiting an exponential backoff between BackoffMin and
// BackoffMax.
type supervisor struct {
	name       string
	dir        string // where status.json is kept
	run        runFunc
	logs       *logSink
	backoffMin time.Duration
	backoffMax time.Duration
	metrics    *metrics
	// onState, when set, is told each state the bridge enters.
	onState func(state string)

	mu     sync.Mutex
	health health

	cancel context.CancelFunc
	done   chan struct{}
}

func (s *supervisor) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	s.setState(StateStarting, "")
	go s.loop(ctx)
}

// stop stops the bridge and waits for it.
func (s *supervisor) stop() {
	s.cancel()
	<-s.done
}

func (s *supervisor) loop(ctx context.Context) {
	defer close(s.done)
	defer s.setState(StateStopped, "")
	backoff := s.backoffMin
	for {
		s.setState(StateStarting, "")
		s.logs.Printf("starting bridge %s", s.name)
		began := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			s.logs.Printf("bridge %s stopped", s.name)
			return
		}
		if err == nil {
			err = errors.New("the bridge stopped by itself")
		}
		if time.Since(began) >= healthyRun {
			backoff = s.backoffMin
		}
		s.mu.Lock()
		s.health.Restarts++
		s.mu.Unlock()
		s.metrics.restarts.WithLabelValues(s.name).Inc()
		s.setState(StateBackoff, err.Error())
		s.logs.Printf("bridge %s failed: %v; starting again in %v", s.name, err, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.backoffMax)
	}
}

// runOnce runs the bridge, turning a panic of the run itself into an
// error.
func (s *supervisor) runOnce(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return s.run(ctx, s.logs, func() { s.setState(StateRunning, "") }, s.setBridgeState)
}

// setState moves to state; a non-empty lastError replaces the last error.
func (s *supervisor) setState(state, lastError string) {
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		if s.onState != nil {
			s.onState(state)
		}
	}()
	if s.health.State != state {
		s.health.State = state
		s.health.Since = time.Now()
	}
	if lastError != "" {
		s.health.LastError = lastError
	}
	up := 0.0
	if state == StateRunning {
		up = 1
	}
	s.metrics.up.WithLabelValues(s.name).Set(up)
	writeHealth(s.dir, s.health)
}

func (s *supervisor) setBridgeState(st status.BridgeState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.BridgeState = string(st.StateEvent)
	writeHealth(s.dir, s.health)
}

func (s *supervisor) snapshot() health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}
