package tunnel

import (
	"errors"
	"time"
)

// Sentinel errors of Hub.Dial and Tunnel.Open. Callers map them to HTTP
// statuses with errors.Is; the messages are safe to show to users.
var (
	// ErrDeviceOffline: no tunnel of the device is connected.
	ErrDeviceOffline = errors.New("device offline")
	// ErrPortNotAllowed: the port is not in the agent's allow-list.
	ErrPortNotAllowed = errors.New("port not allowed")
	// ErrRefused: the agent's dial of the local port was refused.
	ErrRefused = errors.New("connection refused by device")
	// ErrTimeout: the agent did not answer in time, or its local dial timed out.
	ErrTimeout = errors.New("device timeout")
	// ErrDeviceFailure: the agent reported another failure.
	ErrDeviceFailure = errors.New("device failure")
	// ErrDeviceBusy: the device has MaxDeviceStreams streams open
	// already. It is Throttled (retry after BusyRetryAfter), so the
	// proxy's answers carry Retry-After; they say 503, not 429, because
	// the streams are not necessarily the caller's.
	ErrDeviceBusy error = &retryError{msg: "device busy: too many open streams", after: BusyRetryAfter}
	// ErrBadHeader: an open header or reply could not be parsed.
	ErrBadHeader = errors.New("bad stream header")
	// ErrInvalidDeviceID: a device id is not a DNS label.
	ErrInvalidDeviceID = errors.New("invalid device id")
	// ErrUnauthorized: Server.Authenticate refused the device's credentials.
	// Any other error from it is the reflector's own failure (503), so agents
	// retry with their normal backoff rather than the long 401 wait.
	ErrUnauthorized = errors.New("wrong device credentials")
)

// OpenError is a refusal the agent answered to a stream open. It unwraps to
// the sentinel matching its status, so errors.Is(err, ErrRefused) works, and
// keeps the agent's one-line message for the user.
type OpenError struct {
	Status  Status
	Message string
}

func (e *OpenError) Error() string {
	if e.Message == "" {
		return e.Unwrap().Error()
	}
	return e.Unwrap().Error() + ": " + e.Message
}

// Unwrap returns the sentinel for the status.
func (e *OpenError) Unwrap() error {
	switch e.Status {
	case StatusNotAllowed:
		return ErrPortNotAllowed
	case StatusRefused:
		return ErrRefused
	case StatusTimeout:
		return ErrTimeout
	default:
		return ErrDeviceFailure
	}
}

// BusyRetryAfter is the Retry-After of ErrDeviceBusy: a hint, since a slot
// frees whenever any stream of the device ends.
const BusyRetryAfter = 5 * time.Second

// retryError is a sentinel that is also Throttled.
type retryError struct {
	msg   string
	after time.Duration
}

func (e *retryError) Error() string             { return e.msg }
func (e *retryError) RetryAfter() time.Duration { return e.after }
