package sync

import (
	"context"
	"fmt"
	"net/http"
	gosync "sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/httppark"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// A /sync long-poll that has to wait is parked where it can be
// (httppark): its connection leaves net/http, the handler's goroutine
// returns, and a parkedSync waits in the Notifier (OnWake) and on a
// timer for its deadline. When woken, one of the Service's workers
// builds its answer and writes it, or joins the build of an identical
// request in flight (as a waiting handler would) and writes the answer on
// a worker once that is done; an answer without news before the deadline
// is not written, and the long-poll waits again. A long-poll
// that cannot be parked waits on its handler's goroutine as before.

// parkedSync is a parked /sync long-poll.
type parkedSync struct {
	s        *Service
	conn     *httppark.Conn
	user     id.UserID
	key      buildKey
	build    func(context.Context) (*Response, error)
	deadline time.Time
	timer    *time.Timer

	mu     gosync.Mutex
	state  parkState
	unwake func() // takes back the Notifier registration while waiting
}

type parkState int

const (
	parkRunning parkState = iota // building or deciding
	parkWaiting                  // registered in the Notifier
	parkDone                     // answered, or the client went
)

// park parks the long-poll if its connection can be taken off the
// server, to wait on ch (taken before the build that found no news).
func (s *Service) park(w http.ResponseWriter, r *http.Request, key buildKey, build func(context.Context) (*Response, error), deadline time.Time, ch <-chan struct{}) bool {
	p := &parkedSync{s: s, user: key.user, key: key, build: build, deadline: deadline, state: parkRunning}
	s.waiting.Add(1)
	conn, ok := httppark.Park(w, r, p.gone)
	if !ok {
		s.waiting.Add(-1)
		return false
	}
	p.mu.Lock()
	p.conn = conn
	if p.state == parkDone { // gone already
		p.mu.Unlock()
		return true
	}
	p.timer = time.AfterFunc(time.Until(deadline), p.woken)
	p.mu.Unlock()
	p.wait(ch)
	return true
}

// wait registers p to be woken when ch closes, or resumes it at once if
// ch has closed already or the deadline has passed (the timer, which
// fired while p was running, found nothing to take).
func (p *parkedSync) wait(ch <-chan struct{}) {
	p.mu.Lock()
	if p.state != parkRunning {
		p.mu.Unlock()
		return
	}
	if !time.Now().Before(p.deadline) {
		p.mu.Unlock()
		p.s.workers.add(p.resume)
		return
	}
	p.state = parkWaiting
	p.mu.Unlock()
	unwake, ok := p.s.Notifier.OnWake(p.user, ch, p.woken)
	p.mu.Lock()
	if p.state == parkWaiting {
		if ok {
			p.unwake = unwake
			p.mu.Unlock()
			return
		}
		p.state = parkRunning
		p.mu.Unlock()
		p.s.workers.add(p.resume)
		return
	}
	// Taken meanwhile (timed out, or gone).
	p.mu.Unlock()
	if ok {
		unwake()
	}
}

// take moves a waiting p to running; false if it was not waiting.
func (p *parkedSync) take() bool {
	p.mu.Lock()
	if p.state != parkWaiting {
		p.mu.Unlock()
		return false
	}
	p.state = parkRunning
	unwake := p.unwake
	p.unwake = nil
	p.mu.Unlock()
	if unwake != nil {
		unwake()
	}
	return true
}

// woken resumes a waiting p, at its wake-up or at its deadline.
func (p *parkedSync) woken() {
	if p.take() {
		p.s.workers.add(p.resume)
	}
}

// gone runs when the client closes the connection (or the listener
// closes): p is forgotten.
func (p *parkedSync) gone() {
	p.mu.Lock()
	prev := p.state
	p.state = parkDone
	unwake, timer := p.unwake, p.timer
	p.unwake = nil
	p.mu.Unlock()
	if prev == parkDone {
		return
	}
	if unwake != nil {
		unwake()
	}
	if timer != nil {
		timer.Stop()
	}
	p.s.waiting.Add(-1)
}

// resume builds the answer again, from a fresh notifier channel. It runs
// on a worker, which builds and answers itself unless a build for the
// same request is in flight: then the answer is queued for when that is
// done, so that the answers of many long-polls sharing a build are spread
// over the workers.
func (p *parkedSync) resume() {
	ch := p.s.Notifier.Channel(p.user)
	f := p.s.builds.joinHere(context.Background(), p.key, ch, p.build, func(f *flight) {
		p.s.workers.add(func() { p.decide(f, ch) })
	})
	if f != nil {
		p.decide(f, ch)
	}
}

// decide answers with f if it has news or the deadline has passed, and
// waits again on ch otherwise.
func (p *parkedSync) decide(f *flight, ch <-chan struct{}) {
	if f.err == nil && !f.resp.news && time.Now().Before(p.deadline) {
		p.wait(ch)
		return
	}
	p.mu.Lock()
	if p.state != parkRunning {
		p.mu.Unlock()
		return
	}
	p.state = parkDone
	p.mu.Unlock()
	p.timer.Stop()
	p.s.waiting.Add(-1)
	status, header, body := p.answer(f)
	if header == nil {
		header = jsonHeader
	} else {
		header.Set("Content-Type", "application/json")
	}
	if err := p.conn.Answer(status, header, body); err != nil {
		p.s.log.Debug("parked /sync answer not delivered", "user", p.user, "err", err)
	}
}

// answer is the status, headers and JSON body the handler would have
// written for f.
func (p *parkedSync) answer(f *flight) (int, http.Header, []byte) {
	err := f.err
	if err == nil {
		b, encErr := f.encoded()
		if encErr == nil {
			return http.StatusOK, nil, b
		}
		err = fmt.Errorf("encode response: %w", encErr)
	}
	return mxhttp.ErrorResponse(context.Background(), http.MethodGet, syncPath, err)
}

// jsonHeader is what a parked answer adds to the handler's header.
var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// syncPath is the path of the requests parked here, for the log.
const syncPath = "/_matrix/client/v3/sync"
