package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Refusals decided by the proxy itself, before any dial.
var (
	ErrNotDevice     = errors.New("not a device address")
	ErrUnknownDevice = errors.New("unknown device")
	ErrNoAccess      = errors.New("no access to device")
	ErrPortNotListed = errors.New("port not allowed")
	ErrBadTarget     = errors.New("bad target address")
	// ErrTooManyStreams: the user has MaxUserStreams streams open to the
	// device already. It is a tunnel.Throttled: 429 with Retry-After.
	ErrTooManyStreams error = &throttled{
		msg:   fmt.Sprintf("too many open streams: at most %d per user and device", MaxUserStreams),
		after: tunnel.BusyRetryAfter,
	}

	// errInternal: the reflector could not decide (its store failed). The
	// user sees 500 and no detail; the log has the cause.
	errInternal = errors.New("internal error")
)

// statusFor maps an error of resolving, authorising or dialling to the status
// the user gets (DESIGN.md, "Errors"). The reason is one line, safe to show.
func statusFor(err error) (int, string) {
	if errors.Is(err, tunnel.ErrDeviceBusy) {
		// Throttled too (Retry-After), but the device's streams are not
		// the caller's doing: 503, not 429.
		return http.StatusServiceUnavailable, reason(err)
	}
	if msg, ok := tunnel.RetryLater(nil, err); ok {
		return http.StatusTooManyRequests, msg
	}
	switch {
	case errors.Is(err, errNeedAuth):
		return http.StatusProxyAuthRequired, "proxy authentication required"
	case errors.Is(err, errInternal):
		return http.StatusInternalServerError, "internal error: the reflector cannot check this request now"
	case errors.Is(err, ErrBadTarget):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrNotDevice), errors.Is(err, ErrNoAccess),
		errors.Is(err, ErrPortNotListed), errors.Is(err, tunnel.ErrPortNotAllowed):
		return http.StatusForbidden, reason(err)
	case errors.Is(err, ErrUnknownDevice), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, reason(err)
	case errors.Is(err, tunnel.ErrTimeout):
		return http.StatusGatewayTimeout, reason(err)
	case errors.Is(err, tunnel.ErrDeviceOffline), errors.Is(err, tunnel.ErrRefused),
		errors.Is(err, tunnel.ErrDeviceFailure):
		return http.StatusBadGateway, reason(err)
	case responseHeaderTooLarge(err):
		return http.StatusBadGateway, fmt.Sprintf("the device's response headers are too large: over %d KiB", maxResponseHeaderBytes>>10)
	}
	return http.StatusBadGateway, "cannot reach device"
}

// responseHeaderTooLarge reports whether err is the Transport's refusal of
// a device response whose header passed MaxResponseHeaderBytes. net/http
// has no sentinel for it (transport.go builds it with fmt.Errorf), so its
// text is matched here, in this one place;
// TestDeviceResponseHeadersTooLargeSaysSo notices if the text changes.
func responseHeaderTooLarge(err error) bool {
	return strings.Contains(err.Error(), "server response headers exceeded")
}

// httpError answers a request with status and its one-line reason msg, and
// with Retry-After when err is Throttled (ErrDeviceBusy, ErrTooManyStreams,
// a lockout), as every 429 and 503 of the proxy has.
func httpError(w http.ResponseWriter, err error, status int, msg string) {
	tunnel.RetryLater(w.Header(), err)
	http.Error(w, msg, status)
}

// reason is the user-facing text of err: our own wrapping ("dial device x
// port 22: connection refused by device: dial tcp ...") already names only
// the device and port, so it is shown as is.
func reason(err error) string { return err.Error() }

// throttled is a refusal sentinel that is also a tunnel.Throttled.
type throttled struct {
	msg   string
	after time.Duration
}

func (e *throttled) Error() string             { return e.msg }
func (e *throttled) RetryAfter() time.Duration { return e.after }
