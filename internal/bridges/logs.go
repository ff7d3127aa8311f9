package bridges

import (
	"bytes"
	"fmt"
	"os"
	"sync"
)

// The bounds of a bridge's logs: the lines kept in memory for its status,
// and the size of bridge.log before it is moved to bridge.log.1 (the one
// older file kept).
const (
	ringLines   = 200
	maxLogBytes = 8 << 20
)

// logSink takes a bridge's log output (its own or a child process's
// stdout and stderr), line by line, into a bounded ring of recent lines and
// the bounded file bridge.log.
type logSink struct {
	path string

	mu      sync.Mutex
	partial []byte
	ring    []string
	next    int // where the next line goes once the ring is full
	file    *os.File
	size    int64
}

func newLogSink(path string) *logSink {
	return &logSink{path: path}
}

// Write splits p into lines; a line without its newline yet waits for the
// rest.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.addLine(string(bytes.TrimRight(s.partial[:i], "\r")))
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 { // a runaway line: keep it, cut
		s.addLine(string(s.partial))
		s.partial = nil
	}
	return len(p), nil
}

// Printf adds a line of the manager's own (start, exit, backoff).
func (s *logSink) Printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLine("matrixos: " + fmt.Sprintf(format, args...))
}

func (s *logSink) addLine(line string) {
	if len(s.ring) < ringLines {
		s.ring = append(s.ring, line)
	} else {
		s.ring[s.next] = line
		s.next = (s.next + 1) % ringLines
	}
	s.writeFile(line + "\n")
}

// writeFile appends to bridge.log, moving it to bridge.log.1 when it has
// grown past maxLogBytes. A file that cannot be written loses the line;
// the ring keeps it.
func (s *logSink) writeFile(line string) {
	if s.file == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return
		}
		s.file, s.size = f, info.Size()
	}
	n, _ := s.file.WriteString(line)
	s.size += int64(n)
	if s.size >= maxLogBytes {
		s.file.Close()
		s.file = nil
		os.Rename(s.path, s.path+".1")
	}
}

// Lines returns the recent lines, oldest first.
func (s *logSink) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// Close closes bridge.log.
func (s *logSink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}
