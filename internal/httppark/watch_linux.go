package httppark

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// watcher tells when watched connections become readable or are closed
// by their peer, with one epoll instance and one goroutine for them all.
// Each watch fires once (EPOLLONESHOT) and is then forgotten; the
// kernel drops a descriptor from the epoll set when it is closed.
type watcher struct {
	epfd int
	stop [2]int // a pipe: closing stop[1] ends the loop

	mu      sync.Mutex
	next    uint64
	watches map[uint64]watch
}

type watch struct {
	fd int
	fn func(hup bool)
}

func newWatcher() (*watcher, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	w := &watcher{epfd: epfd, next: 1, watches: map[uint64]watch{}}
	if err := syscall.Pipe2(w.stop[:], syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // data 0: the stop pipe
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.stop[0], &ev); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	go w.loop()
	return w, nil
}

// add watches conn until it is closed by the peer, or (with data) until
// it is readable, then runs fn (on the watcher's goroutine: it must not
// block). The returned function stops the watch; it reports false if fn
// has run or will.
func (w *watcher) add(conn net.Conn, data bool, fn func(hup bool)) (func() bool, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a file descriptor connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	key := w.next
	w.next++
	w.mu.Unlock()
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		w.mu.Lock()
		w.watches[key] = watch{fd: int(fd), fn: fn}
		w.mu.Unlock()
		// EPOLLRDHUP alone still reports the peer's close (and EPOLLHUP
		// and EPOLLERR its reset) while unread bytes wait.
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
		if data {
			ev.Events |= syscall.EPOLLIN
		}
		setKey(&ev, key)
		ctlErr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		if errors.Is(ctlErr, syscall.EEXIST) {
			// Watched before: a fired watch stays registered, disabled.
			ctlErr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
		if ctlErr != nil {
			w.mu.Lock()
			delete(w.watches, key)
			w.mu.Unlock()
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return nil, fmt.Errorf("watch connection: %w", err)
	}
	return func() bool { return w.remove(key) }, nil
}

// remove stops the watch key; false if it has fired.
func (w *watcher) remove(key uint64) bool {
	w.mu.Lock()
	wt, ok := w.watches[key]
	delete(w.watches, key)
	w.mu.Unlock()
	if ok {
		// The descriptor is still open: whoever removes a watch does so
		// before closing its connection.
		syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, wt.fd, nil)
	}
	return ok
}

func (w *watcher) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			key := getKey(&ev)
			if key == 0 {
				w.closeFDs()
				return
			}
			w.mu.Lock()
			wt, ok := w.watches[key]
			delete(w.watches, key)
			w.mu.Unlock()
			if !ok {
				continue // removed meanwhile
			}
			// The fired watch stays registered, disabled, until the
			// connection closes or is watched again: the loop cannot know
			// that the descriptor is still this connection's.
			wt.fn(ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0)
		}
	}
}

// close ends the loop, which then closes the descriptors.
func (w *watcher) close() { syscall.Close(w.stop[1]) }

func (w *watcher) closeFDs() {
	syscall.Close(w.stop[0])
	syscall.Close(w.epfd)
}

// hasBytes reports whether conn has bytes waiting to be read.
func hasBytes(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return false
	}
	return n > 0
}

func setKey(ev *syscall.EpollEvent, key uint64) {
	ev.Fd = int32(uint32(key))
	ev.Pad = int32(uint32(key >> 32))
}

func getKey(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
