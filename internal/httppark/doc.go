// Package httppark takes HTTP/1.1 connections off net/http while their
// request waits (a long-poll), and hands them back for the next request
// once answered.
//
// A request served through a Listener may be parked (Park): its
// connection is hijacked with whatever bytes the server had read ahead,
// the handler returns, and nothing but a Conn is left: no goroutine, no
// buffered reader or writer. While parked, the connection is watched
// for the client closing it by one epoll instance per Listener (Linux),
// not by a goroutine per connection. The headers the handler had set are
// held as one copy shared by all parked requests that set the same.
// Conn.Answer writes the response (status line, those headers with the
// answer's own, Content-Length and the body in one write) and hands the
// connection back: the Listener's
// Accept returns it to the http.Server once the client sends its next
// request (or at once when bytes it sent are already buffered, which
// are then read first), so a kept-alive connection between requests
// costs no goroutine either. Requests that cannot be parked (HTTP/2,
// TLS, a request body, Connection: close, another platform) are left to
// the handler to answer as usual.
package httppark
