package clientapi

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// maxRemoteJoins bounds the joins over federation going on at once, in a
// request or in the background after it (a join waits up to a minute for
// each server it tries).
const maxRemoteJoins = 32

// remoteJoins runs the joins over federation: one at a time per user and
// room (a join asked again while one goes on follows that one) and at
// most a bound of them at once. The zero value is ready, with
// maxRemoteJoins.
type remoteJoins struct {
	once    sync.Once
	slots   chan struct{}
	mu      sync.Mutex
	running map[remoteJoinKey]*remoteJoin
	limit   int // maxRemoteJoins when 0
}

type remoteJoinKey struct {
	user id.UserID
	room id.RoomID
}

// remoteJoin is one join going on; err is set when done closes.
type remoteJoin struct {
	done chan struct{}
	err  error
}

func (j *remoteJoins) init() {
	j.once.Do(func() {
		if j.limit == 0 {
			j.limit = maxRemoteJoins
		}
		j.slots = make(chan struct{}, j.limit)
		j.running = map[remoteJoinKey]*remoteJoin{}
	})
}

// start returns the join of user to room going on, starting join in the
// background when there is none. When the bound is reached and no join
// ends within wait it answers 429 M_LIMIT_EXCEEDED; it gives up as well
// when ctx ends first.
func (j *remoteJoins) start(ctx context.Context, user id.UserID, room id.RoomID, wait time.Duration, join func() error) (*remoteJoin, error) {
	j.init()
	key := remoteJoinKey{user, room}
	if r := j.find(key); r != nil {
		return r, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case j.slots <- struct{}{}:
	case <-timer.C:
		return nil, mxhttp.LimitExceeded("too many joins over federation are going on; try again later").With("retry_after_ms", wait.Milliseconds())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	j.mu.Lock()
	if r := j.running[key]; r != nil { // started while this one waited
		j.mu.Unlock()
		<-j.slots
		return r, nil
	}
	r := &remoteJoin{done: make(chan struct{})}
	j.running[key] = r
	j.mu.Unlock()
	go func() {
		r.err = join()
		j.mu.Lock()
		delete(j.running, key)
		j.mu.Unlock()
		<-j.slots
		close(r.done)
	}()
	return r, nil
}

func (j *remoteJoins) find(key remoteJoinKey) *remoteJoin {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.running[key]
}
