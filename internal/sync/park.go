package sync

import (
	"container/heap"
	"context"
	"fmt"
	"net/http"
	"strings"
	gosync "sync"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/httppark"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// A /sync long-poll that has to wait is parked where it can be
// (httppark): its connection leaves net/http, the handler's goroutine
// returns, and a parkedSync waits in the Notifier (OnWake) and in the
// Service's deadlines (one timer for all) for its deadline. When woken, one of the Service's workers
// builds its answer and writes it, or joins the build of an identical
// request in flight (as a waiting handler would) and writes the answer on
// a worker once that is done; an answer without news before the deadline
// is not written, and the long-poll waits again. A long-poll
// that cannot be parked waits on its handler's goroutine as before.

// parkedSync is a parked /sync long-poll. It holds what its builds
// need (sess, filter and key), not a closure over them.
type parkedSync struct {
	s        *Service
	conn     *httppark.Conn
	sess     *accounts.Session
	filter   *Filter
	key      buildKey
	deadline time.Time
	slot     int // in s.deadlines, guarded by its mutex; -1 when not in it

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
func (s *Service) park(w http.ResponseWriter, r *http.Request, sess *accounts.Session, filter *Filter, key buildKey, deadline time.Time, ch <-chan struct{}) bool {
	// The filter parameter is a part of the request's line, which it
	// would keep.
	key.filter = strings.Clone(key.filter)
	p := &parkedSync{s: s, sess: sess, filter: filter, key: key, deadline: deadline, slot: -1, state: parkRunning}
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
	s.deadlines.add(p)
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
	unwake, ok := p.s.Notifier.OnWake(p.key.user, ch, p.woken)
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
	unwake := p.unwake
	p.unwake = nil
	p.mu.Unlock()
	if prev == parkDone {
		return
	}
	if unwake != nil {
		unwake()
	}
	p.s.deadlines.remove(p)
	p.s.waiting.Add(-1)
}

// resume builds the answer again, from a fresh notifier channel. It runs
// on a worker, which builds and answers itself unless a build for the
// same request is in flight: then the answer is queued for when that is
// done, so that the answers of many long-polls sharing a build are spread
// over the workers.
func (p *parkedSync) resume() {
	ch := p.s.Notifier.Channel(p.key.user)
	f := p.s.builds.joinHere(context.Background(), p.key, ch, p.build, func(f *flight) {
		p.s.workers.add(func() { p.decide(f, ch) })
	})
	if f != nil {
		p.decide(f, ch)
	}
}

// build builds p's answer.
func (p *parkedSync) build(ctx context.Context) (*Response, error) {
	return p.s.build(ctx, p.sess, p.key.since, p.key.full, p.key.mode, p.filter)
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
	p.s.deadlines.remove(p)
	p.s.waiting.Add(-1)
	status, header, body := p.answer(f)
	if header == nil {
		header = jsonHeader
	} else {
		header.Set("Content-Type", "application/json")
	}
	if err := p.conn.Answer(status, header, body); err != nil {
		p.s.log.Debug("parked /sync answer not delivered", "user", p.key.user, "err", err)
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

// deadlines wakes parked long-polls at their deadlines, with one timer
// for all of them (a timer each was a tenth of a parked long-poll's
// memory): a heap of them by deadline, the timer set for the first.
type deadlines struct {
	mu    gosync.Mutex
	polls []*parkedSync // a heap by deadline; each knows its slot
	timer *time.Timer
	at    time.Time // when the timer fires; zero when stopped
}

// add puts p in d, to be woken at its deadline.
func (d *deadlines) add(p *parkedSync) {
	d.mu.Lock()
	defer d.mu.Unlock()
	heap.Push((*deadlineHeap)(&d.polls), p)
	if !d.at.IsZero() && !p.deadline.Before(d.at) {
		return
	}
	d.at = p.deadline
	if d.timer == nil {
		d.timer = time.AfterFunc(time.Until(p.deadline), d.fire)
	} else {
		d.timer.Reset(time.Until(p.deadline))
	}
}

// remove takes p out of d, if it is there.
func (d *deadlines) remove(p *parkedSync) {
	d.mu.Lock()
	if p.slot >= 0 {
		heap.Remove((*deadlineHeap)(&d.polls), p.slot)
	}
	d.mu.Unlock()
}

// fire wakes the long-polls whose deadline has come, and sets the timer
// for the next.
func (d *deadlines) fire() {
	now := time.Now()
	var due []*parkedSync
	d.mu.Lock()
	for len(d.polls) > 0 && !d.polls[0].deadline.After(now) {
		due = append(due, heap.Pop((*deadlineHeap)(&d.polls)).(*parkedSync))
	}
	d.at = time.Time{}
	if len(d.polls) > 0 {
		d.at = d.polls[0].deadline
		d.timer.Reset(time.Until(d.at))
	}
	d.mu.Unlock()
	for _, p := range due {
		p.woken()
	}
}

// deadlineHeap is container/heap's view of deadlines.polls.
type deadlineHeap []*parkedSync

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].slot, h[j].slot = i, j
}

func (h *deadlineHeap) Push(x any) {
	p := x.(*parkedSync)
	p.slot = len(*h)
	*h = append(*h, p)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	p.slot = -1
	*h = old[:len(old)-1]
	return p
}
