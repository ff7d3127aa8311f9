package httppark

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Listener wraps a TCP listener so that the connections of parked
// requests come back to the http.Server that serves it: its Accept
// returns new connections and answered parked ones alike.
type Listener struct {
	net.Listener
	idleTimeout time.Duration
	watch       *watcher // nil where parking is not supported

	accepted chan acceptResult // from the inner listener
	back     chan net.Conn     // answered connections, ready for their next request
	closed   chan struct{}
	close    sync.Once

	mu    sync.Mutex
	conns map[*Conn]struct{} // parked or idle, closed with the listener
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// NewListener wraps ln. A connection handed back idles off the server
// for at most idleTimeout waiting for its next request (0: no limit),
// as http.Server.IdleTimeout does for the connections it holds.
func NewListener(ln net.Listener, idleTimeout time.Duration) *Listener {
	l := &Listener{
		Listener:    ln,
		idleTimeout: idleTimeout,
		accepted:    make(chan acceptResult),
		back:        make(chan net.Conn, 256),
		closed:      make(chan struct{}),
		conns:       map[*Conn]struct{}{},
	}
	if w, err := newWatcher(); err == nil {
		l.watch = w
	}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil && !isTemporary(err) {
			return
		}
	}
}

func isTemporary(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}

// Accept returns the next new connection or answered parked one.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.back:
		return c, nil
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes every parked or idle connection (as
// the end of the process would); their requests are told through Park's
// gone function.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.close.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
		l.mu.Lock()
		conns := l.conns
		l.conns = map[*Conn]struct{}{}
		l.mu.Unlock()
		for c := range conns {
			c.drop()
		}
		if l.watch != nil {
			l.watch.close()
		}
	})
	return err
}

// hold records c as held off the server; false once the listener closed.
func (l *Listener) hold(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
		return false
	default:
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Listener) release(c *Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// handBack gives conn to Accept, or closes it once the listener closed.
func (l *Listener) handBack(conn net.Conn) {
	select {
	case l.back <- conn:
		return
	default:
	}
	go func() {
		select {
		case l.back <- conn:
		case <-l.closed:
			conn.Close()
		}
	}()
}

type listenerKey struct{}

// BaseContext is the http.Server's BaseContext for a server that serves
// l: its requests can then be parked.
func (l *Listener) BaseContext(net.Listener) context.Context {
	return context.WithValue(context.Background(), listenerKey{}, l)
}

func listenerOf(ctx context.Context) *Listener {
	l, _ := ctx.Value(listenerKey{}).(*Listener)
	return l
}
