package node

import (
	"io"
	"net/http"
	"time"
)

// Request bodies must arrive at a useful pace: a client gets
// bodyStartTimeout for its body, extended by one second for every
// bodyMinRate bytes it has sent. A legitimate upload at a slow but real
// speed never runs out of time, while a client dribbling a byte now and
// then (to hold connections and goroutines open) is cut off after about
// bodyStartTimeout. Requests without a body, such as a long-polling /sync,
// are not affected: the server's own read deadline is not armed while a
// handler waits.
const (
	bodyStartTimeout = 20 * time.Second
	bodyMinRate      = 16 << 10 // bytes a second
)

// limitBodyTime applies the body deadline to every request with a body.
// Where the connection has no deadlines (in-process tests with a
// recorder), the request is served as is.
func limitBodyTime(next http.Handler, start time.Duration, minRate int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(start)
		if err := rc.SetReadDeadline(deadline); err != nil {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, deadline: deadline, minRate: minRate}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody moves the connection's read deadline forward as the body
// arrives.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	deadline time.Time
	minRate  int64
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// Once the body has ended (err != nil) the server reads the connection
	// in the background to notice a client going away; a deadline set then
	// would cancel the request. So only extend it while the body goes on.
	if n > 0 && err == nil {
		b.deadline = b.deadline.Add(time.Duration(int64(n) * int64(time.Second) / b.minRate))
		b.rc.SetReadDeadline(b.deadline)
	}
	return n, err
}
