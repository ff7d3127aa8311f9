//go:build !linux

package httppark

import (
	"errors"
	"net"
)

// watcher is Linux's alone: elsewhere nothing is parked.
type watcher struct{}

func newWatcher() (*watcher, error) { return nil, errors.New("parking needs Linux") }

func (w *watcher) add(net.Conn, bool, func(bool)) (func() bool, error) {
	return nil, errors.New("parking needs Linux")
}

func (w *watcher) close() {}

func hasBytes(net.Conn) bool { return false }
