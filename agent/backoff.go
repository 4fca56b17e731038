package agent

import (
	"math/rand/v2"
	"time"
)

// Reconnect delays. A fleet of agents that lost the reflector at the same
// moment must not come back at the same moment: every delay is drawn with
// full jitter, uniformly from [0, d), where d doubles from BaseDelay to
// MaxDelay ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
const (
	// DefaultBaseDelay is the first reconnect delay bound.
	DefaultBaseDelay = time.Second
	// DefaultMaxDelay caps the delay bound.
	DefaultMaxDelay = 60 * time.Second
	// DefaultUnauthorizedDelay is the least wait after the reflector refused
	// the device's credentials (401): retrying sooner cannot help, since
	// someone has to change the secret on one side.
	DefaultUnauthorizedDelay = 60 * time.Second
	// MaxRetryAfter caps the wait a reflector's Retry-After (429, 503) can
	// impose: the reflector's lockouts double up to an hour, and a header
	// asking for more is not obeyed past that.
	MaxRetryAfter = time.Hour
	// stableAfter is how long a tunnel must stay up for the next failure to
	// start again from BaseDelay; a tunnel that drops at once keeps backing
	// off.
	stableAfter = 30 * time.Second
)

// backoff computes reconnect delays. It is used by one goroutine only.
type backoff struct {
	base, max, unauthorized, stable time.Duration
	// randN returns a uniform value in [0, n) for n > 0; tests replace it.
	randN func(n int64) int64

	bound time.Duration // the current upper bound of a normal delay
}

func newBackoff(opts Options) *backoff {
	b := &backoff{
		base:         opts.BaseDelay,
		max:          opts.MaxDelay,
		unauthorized: opts.UnauthorizedDelay,
		stable:       stableAfter,
		randN:        rand.Int64N,
	}
	if b.base <= 0 {
		b.base = DefaultBaseDelay
	}
	if b.max <= 0 {
		b.max = DefaultMaxDelay
	}
	if b.max < b.base {
		b.max = b.base
	}
	if b.unauthorized <= 0 {
		b.unauthorized = DefaultUnauthorizedDelay
	}
	b.bound = b.base
	return b
}

// next returns the delay before the next attempt after a failed one.
// A normal failure waits a uniform time in [0, bound) and doubles the bound
// up to max. A refused credential (unauthorized) waits unauthorized plus a
// jitter of up to half of it, so never less than unauthorized.
func (b *backoff) next(unauthorized bool) time.Duration {
	if unauthorized {
		return b.unauthorized + b.jitter(b.unauthorized/2)
	}
	d := b.jitter(b.bound)
	b.bound = min(2*b.bound, b.max)
	return d
}

// retryAfter returns the delay after the reflector answered 429 or 503
// with Retry-After d: at least d (capped at MaxRetryAfter) plus a jitter of
// up to a quarter of it, so that devices refused together do not return
// together, and never less than next(false), whose bound it doubles too.
// The total stays within MaxRetryAfter.
func (b *backoff) retryAfter(d time.Duration) time.Duration {
	normal := b.next(false)
	d = min(max(d, 0), MaxRetryAfter)
	return max(normal, min(d+b.jitter(d/4), MaxRetryAfter))
}

// connected tells the backoff that a tunnel was up for d before it ended.
// A tunnel that stayed up long enough resets the bound to base.
func (b *backoff) connected(d time.Duration) {
	if d >= b.stable {
		b.bound = b.base
	}
}

func (b *backoff) jitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(b.randN(int64(n)))
}
