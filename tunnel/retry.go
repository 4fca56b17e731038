package tunnel

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Throttled is an error that refuses a client for a while: the server's
// login limiter returns one while a user, device or address is locked out.
// The endpoints of this package and its sub-packages answer it 429 with a
// Retry-After header, through RetryLater, without importing the limiter.
type Throttled interface {
	error
	RetryAfter() time.Duration
}

// RetryLater reports whether err, or an error it wraps, is Throttled. If it
// is, it sets Retry-After on h (when h is not nil) and returns the message
// to show the client with status 429 Too Many Requests. It is the one place
// that turns a lockout into an answer.
func RetryLater(h http.Header, err error) (msg string, ok bool) {
	var t Throttled
	if !errors.As(err, &t) {
		return "", false
	}
	if h != nil {
		h.Set("Retry-After", RetryAfterSeconds(t.RetryAfter()))
	}
	return t.Error(), true
}

// RetryAfterSeconds formats d for a Retry-After header: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
