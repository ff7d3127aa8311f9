package httppark

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"
)

// writeTimeout bounds the writing of a parked request's answer, so that
// a client that stopped reading cannot hold the answering goroutine.
const writeTimeout = 30 * time.Second

// Conn is the connection of a parked request.
type Conn struct {
	l       *Listener
	conn    net.Conn
	pending []byte                // read ahead by the server: the start of the next request
	lines   unique.Handle[string] // the handler's header lines when it parked, shared by all alike
	gone    func()
	finish  func(status int) // the Finisher's, taken by the first to run it

	mu      sync.Mutex
	state   connState
	unwatch func() bool // stops watching the connection; false if it already fired
	idle    *time.Timer // closes an answered connection that sends nothing
}

type connState int

const (
	parked    connState = iota // waiting for its answer
	answering                  // Answer is writing
	idle                       // answered, waiting for the next request
	closed
)

// Park takes r's connection off the server if r can be parked and
// returns it; the handler must then return without writing anything,
// and answer later with Conn.Answer. The client closing the connection
// before that (or the listener closing) runs gone once, on another
// goroutine, possibly before Park returns; gone must not block.
//
// ok is false (and nothing was done) unless r came through a Listener
// on a platform that can watch connections, is an HTTP/1.1 GET without
// a body, without TLS and without Connection: close.
//
// If w, or a ResponseWriter it wraps (through an Unwrap method, as
// http.ResponseController finds them), is a Finisher, it is told when
// the parked request is over.
func Park(w http.ResponseWriter, r *http.Request, gone func()) (c *Conn, ok bool) {
	l := listenerOf(r.Context())
	if l == nil || l.watch == nil || !parkable(r) {
		return nil, false
	}
	lines := headerLines(w.Header())
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false
	}
	c = &Conn{l: l, conn: conn, lines: lines, gone: gone}
	if f := finisherOf(w); f != nil {
		c.finish = f.ParkedFinisher()
	}
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		c.pending = bytes.Clone(p)
	}
	if !l.hold(c) {
		c.state = closed
		conn.Close()
		c.finished(0)
		gone()
		return c, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Watched for the client closing it: a pipelined request waits in
	// the socket until the answer.
	if unwatch, err := l.watch.add(conn, false, c.readable); err == nil {
		c.unwatch = unwatch
	}
	return c, true
}

// A Finisher is told when a request parked through it is over.
// ParkedFinisher is called once, when the request is parked; the function
// it returns runs once, with the status of the answer once it has been
// written (or has failed), or with 0 when the client went (or the
// Listener closed) before the answer, and must not block. The function is
// held while the request is parked, so it should hold no more than it
// needs: not the ResponseWriter or the Request, which keep the server's
// buffers for the connection alive.
type Finisher interface {
	ParkedFinisher() func(status int)
}

func finisherOf(w http.ResponseWriter) Finisher {
	for {
		switch t := w.(type) {
		case Finisher:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// finished runs the Finisher's function unless it ran already.
func (c *Conn) finished(status int) {
	c.mu.Lock()
	finish := c.finish
	c.finish = nil
	c.mu.Unlock()
	if finish != nil {
		finish(status)
	}
}

func parkable(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && !r.Close && r.TLS == nil &&
		r.Method == http.MethodGet && r.ContentLength == 0 && len(r.TransferEncoding) == 0 &&
		(r.Body == nil || r.Body == http.NoBody)
}

// headerLines is h as the lines of a response's header (without
// Content-Length, which Answer writes), one copy kept for all alike: the
// parked requests of one route carry the same headers (CORS), and each
// holds only a handle to them.
func headerLines(h http.Header) unique.Handle[string] {
	var b strings.Builder
	h.WriteSubset(&b, contentLength)
	return unique.Make(b.String())
}

var contentLength = map[string]bool{"Content-Length": true}

// Answer writes the response, status, header and body, in one write and
// hands the connection back to the server for its next request. The
// response's header is the one the handler had set when it parked, with
// header's fields added (replacing those of the same name), and
// Content-Length and (unless set) Date. It fails if the client has gone
// (or Answer ran before). An answer the client does not take at once is
// finished on a goroutine of its own: Answer does not wait for a slow
// reader.
func (c *Conn) Answer(status int, header http.Header, body []byte) error {
	c.mu.Lock()
	if c.state != parked {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.state = answering
	unwatch := c.unwatch
	c.unwatch = nil
	c.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	head := c.head(status, header, len(body))
	// Most answers fit the socket's buffer and are written at once. One
	// that does not (a client reading slowly, or not at all) is finished
	// on a goroutine of its own, so that the caller (a small pool
	// answering many long-polls) is never held by one client. WriteTo
	// consumes bufs as it writes, so the rest is what is left of it.
	bufs := net.Buffers{head, body}
	c.conn.SetWriteDeadline(time.Now().Add(quickWrite))
	_, err := bufs.WriteTo(c.conn)
	if isTimeout(err) {
		go func() {
			c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, err := bufs.WriteTo(c.conn)
			c.finished(status)
			if err != nil {
				c.drop()
				return
			}
			c.answered()
		}()
		return nil
	}
	c.finished(status)
	if err != nil {
		c.drop()
		return fmt.Errorf("write parked answer: %w", err)
	}
	c.answered()
	return nil
}

// quickWrite is how long Answer itself writes before leaving the rest of
// the answer to a goroutine of its own.
const quickWrite = 5 * time.Millisecond

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// answered hands the connection back once its whole answer was written.
func (c *Conn) answered() {
	c.conn.SetWriteDeadline(time.Time{})
	if len(c.pending) > 0 {
		c.l.release(c)
		c.l.handBack(&replayConn{Conn: c.conn, pending: c.pending})
		return
	}
	c.waitForNext()
}

// head is the status line and header block of an answer.
func (c *Conn) head(status int, header http.Header, length int) []byte {
	b := bytes.NewBuffer(make([]byte, 0, 512))
	b.WriteString("HTTP/1.1 ")
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(status), 10))
	b.WriteByte(' ')
	if text := http.StatusText(status); text != "" {
		b.WriteString(text)
	} else {
		b.WriteString("status code ")
		b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(status), 10))
	}
	b.WriteString("\r\n")
	date := header.Get("Date") != ""
	for line := range strings.Lines(c.lines.Value()) {
		key, _, _ := strings.Cut(line, ":")
		if header.Values(key) != nil {
			continue // replaced by the answer's
		}
		date = date || http.CanonicalHeaderKey(key) == "Date"
		b.WriteString(line)
	}
	header.WriteSubset(b, contentLength)
	b.WriteString("Content-Length: ")
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(length), 10))
	b.WriteString("\r\n")
	if !date {
		b.WriteString("Date: ")
		b.Write(time.Now().UTC().AppendFormat(b.AvailableBuffer(), http.TimeFormat))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// waitForNext holds an answered connection off the server until the
// client sends its next request (or closes, or idles too long).
func (c *Conn) waitForNext() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != answering {
		return
	}
	c.state = idle
	if c.l.idleTimeout > 0 {
		c.idle = time.AfterFunc(c.l.idleTimeout, c.drop)
	}
	unwatch, err := c.l.watch.add(c.conn, true, c.readable)
	if err != nil {
		// Not watched: let the server wait for the request instead.
		c.state = closed
		c.stopIdle()
		c.l.release(c)
		c.l.handBack(c.conn)
		return
	}
	c.unwatch = unwatch
}

// readable runs when the watched connection was closed by the client,
// or has bytes to read while idle. An idle connection with bytes to read
// goes back to the server even when the client has shut down its side
// since (a request, then a half-close): the server reads and answers it,
// then finds the end of the connection.
func (c *Conn) readable(hup bool) {
	c.mu.Lock()
	c.unwatch = nil
	if c.state == idle && (!hup || hasBytes(c.conn)) {
		c.state = closed // no longer ours
		c.stopIdle()
		c.mu.Unlock()
		c.l.release(c)
		c.l.handBack(c.conn)
		return
	}
	c.mu.Unlock()
	if hup {
		c.drop()
	}
}

func (c *Conn) stopIdle() {
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
}

// drop closes the connection; a request still parked is told it went.
func (c *Conn) drop() {
	c.mu.Lock()
	prev := c.state
	if prev == closed {
		c.mu.Unlock()
		return
	}
	c.state = closed
	unwatch := c.unwatch
	c.unwatch = nil
	c.stopIdle()
	c.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	c.conn.Close()
	c.l.release(c)
	if prev == parked {
		c.finished(0)
		c.gone()
	}
}

// replayConn reads the bytes the server had read ahead before the rest
// of the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
