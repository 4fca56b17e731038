package enroll

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The reflector's reasons to refuse an enrolment. Handler.Enroll returns
// errors wrapping these (the server maps its store's errors onto them);
// each has its status.
var (
	ErrKeyInvalid    = errors.New("enrolment key not valid")      // 401
	ErrKeyExpired    = errors.New("enrolment key expired")        // 401
	ErrQuota         = errors.New("enrolment quota exhausted")    // 403
	ErrDeviceExists  = errors.New("device id already registered") // 409
	ErrDeviceInvalid = errors.New("invalid device id")            // 400
)

// ErrRefused: the reflector refused the enrolment for good (a bad or expired
// key, a quota, a device id taken or invalid); the same request will be
// refused again. Every *RefusedError unwraps to it.
var ErrRefused = errors.New("enrolment refused")

// RefusedError is a refusal: the reflector's status and its one-line
// reason. Request returns it for every 4xx answer except 408 and 429.
type RefusedError struct {
	Status  int    // the HTTP status, e.g. 401 or 409
	Message string // the reflector's reason, cleaned for logs; may be empty
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("%v (%d %s)", ErrRefused, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// RetryError is a failure that may pass: the reflector could not be reached,
// answered 5xx or 408, or is throttling (429). After is the reflector's
// Retry-After, 0 when it sent none; the caller waits at least that long
// before trying again.
type RetryError struct {
	After time.Duration
	Err   error
}

// Error is Err's text alone: After varies from answer to answer, and callers
// that log a repeated failure once key it by its text.
func (e *RetryError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *RetryError) Unwrap() error { return e.Err }
