package mxhttp

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a Matrix error response: an HTTP status, an errcode and a
// human-readable message, plus optional extra fields (retry_after_ms, ...).
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Body returns the JSON object sent to the client.
func (e *Error) Body() map[string]any {
	m := map[string]any{"errcode": e.Code, "error": e.Message}
	for k, v := range e.Extra {
		m[k] = v
	}
	return m
}

// With returns a copy of e with an extra response field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = map[string]any{key: value}
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	return &c
}

func newErr(status int, code string) func(format string, args ...any) *Error {
	return func(format string, args ...any) *Error {
		return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
	}
}

// Constructors for the spec's common errors.
var (
	Forbidden        = newErr(http.StatusForbidden, "M_FORBIDDEN")
	UnknownToken     = newErr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	MissingToken     = newErr(http.StatusUnauthorized, "M_MISSING_TOKEN")
	BadJSON          = newErr(http.StatusBadRequest, "M_BAD_JSON")
	NotJSON          = newErr(http.StatusBadRequest, "M_NOT_JSON")
	NotFound         = newErr(http.StatusNotFound, "M_NOT_FOUND")
	LimitExceeded    = newErr(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	Unrecognized     = newErr(http.StatusNotFound, "M_UNRECOGNIZED")
	Unknown          = newErr(http.StatusInternalServerError, "M_UNKNOWN")
	BadRequest       = newErr(http.StatusBadRequest, "M_UNKNOWN") // invalid request with no more specific code
	MissingParam     = newErr(http.StatusBadRequest, "M_MISSING_PARAM")
	InvalidParam     = newErr(http.StatusBadRequest, "M_INVALID_PARAM")
	TooLarge         = newErr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	UserInUse        = newErr(http.StatusBadRequest, "M_USER_IN_USE")
	InvalidUsername  = newErr(http.StatusBadRequest, "M_INVALID_USERNAME")
	RoomInUse        = newErr(http.StatusBadRequest, "M_ROOM_IN_USE")
	BadState         = newErr(http.StatusBadRequest, "M_BAD_STATE")
	GuestAccessDeny  = newErr(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN")
	UnsupportedRoomV = newErr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION")
	UserDeactivated  = newErr(http.StatusForbidden, "M_USER_DEACTIVATED")
	Exclusive        = newErr(http.StatusBadRequest, "M_EXCLUSIVE")
	WeakPassword     = newErr(http.StatusBadRequest, "M_WEAK_PASSWORD")
	InvalidRoomState = newErr(http.StatusBadRequest, "M_INVALID_ROOM_STATE")
	NotYetUploaded   = newErr(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED")
	ThreepidDenied   = newErr(http.StatusForbidden, "M_THREEPID_DENIED")
	Unauthorized     = newErr(http.StatusUnauthorized, "M_UNAUTHORIZED")
	UserLocked       = newErr(http.StatusUnauthorized, "M_USER_LOCKED")
	UserSuspended    = newErr(http.StatusForbidden, "M_USER_SUSPENDED")
	BadAlias         = newErr(http.StatusBadRequest, "M_BAD_ALIAS")
	// InviteBlocked refuses an invite the invitee's invite permission
	// config blocks (spec v1.18).
	InviteBlocked = newErr(http.StatusForbidden, "M_INVITE_BLOCKED")
	// CannotLeaveServerNoticeRoom is Synapse's answer to rejecting the
	// invite to one's server notices room.
	CannotLeaveServerNoticeRoom = newErr(http.StatusForbidden, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
)

// AsError converts err into a Matrix error: a *Error is returned as is,
// anything else becomes M_UNKNOWN with a generic message (the detail is
// logged, not leaked).
func AsError(err error) (*Error, bool) {
	var me *Error
	if errors.As(err, &me) {
		return me, true
	}
	return Unknown("internal server error"), false
}
