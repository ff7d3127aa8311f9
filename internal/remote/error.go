package remote

import (
	"context"
	"errors"
	"net"
	"net/http"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Error converts the error of a federation request to server into the
// error a client gets: a 403 or 404 of the remote server keeps its status,
// errcode and message (it is the remote's answer, not a failure); any
// other answer, or no answer, is 502 M_UNKNOWN, and running out of time
// 504 M_UNKNOWN. A nil err is nil, and an error that is already a Matrix
// error (a check made before the request) is returned as is.
func Error(server string, err error) error {
	if err == nil {
		return nil
	}
	if me, ok := errors.AsType[*mxhttp.Error](err); ok {
		return me
	}
	if he, ok := errors.AsType[mautrix.HTTPError](err); ok && he.Response != nil {
		switch status := he.Response.StatusCode; status {
		case http.StatusNotFound, http.StatusForbidden:
			code, msg := "M_NOT_FOUND", "not found on "+server
			if status == http.StatusForbidden {
				code, msg = "M_FORBIDDEN", server+" refused the request"
			}
			if he.RespError != nil {
				code, msg = he.RespError.ErrCode, he.RespError.Err
			}
			return &mxhttp.Error{Status: status, Code: code, Message: msg}
		}
		if he.Response.StatusCode < 300 {
			return BadGateway("%s sent an invalid response", server)
		}
		return BadGateway("%s answered HTTP %d", server, he.Response.StatusCode)
	}
	if IsTimeout(err) {
		return GatewayTimeout("%s did not answer in time", server)
	}
	return BadGateway("%s could not be reached", server)
}

// IsTimeout reports whether err is a deadline that ran out.
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// IsNotFound reports whether err is a 404 answer (from Error or from the
// remote server itself).
func IsNotFound(err error) bool {
	if me, ok := errors.AsType[*mxhttp.Error](err); ok {
		return me.Status == http.StatusNotFound
	}
	he, ok := errors.AsType[mautrix.HTTPError](err)
	return ok && he.IsStatus(http.StatusNotFound)
}

// BadGateway is 502 M_UNKNOWN: another server failed to answer usefully.
func BadGateway(format string, args ...any) *mxhttp.Error {
	e := mxhttp.Unknown(format, args...)
	e.Status = http.StatusBadGateway
	return e
}

// GatewayTimeout is 504 M_UNKNOWN: another server did not answer in time.
func GatewayTimeout(format string, args ...any) *mxhttp.Error {
	e := mxhttp.Unknown(format, args...)
	e.Status = http.StatusGatewayTimeout
	return e
}
