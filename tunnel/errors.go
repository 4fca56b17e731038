package tunnel

import "errors"

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
