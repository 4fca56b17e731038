package auth

import (
	"context"
	"time"
)

// maxAttemptWait bounds how long Begin waits for the attempts in flight on
// a key to end. They are credential checks, milliseconds each even behind
// the store's argon2id queue; a check slower than this means an overloaded
// server, and the waiter is refused rather than held.
const maxAttemptWait = 10 * time.Second

// Failed is what a failure did to the lockouts of its keys.
type Failed struct {
	// Wait is the longest lockout in force among the keys after the
	// failure, 0 if none.
	Wait time.Duration
	// Started says the failure started a lockout of one of the keys. When
	// Wait is positive and Started false, a key was locked out already.
	Started bool
}

// alreadyLocked reports whether a key was locked out before the failure.
func (f Failed) alreadyLocked() bool { return f.Wait > 0 && !f.Started }

// An Attempt is the check of one guessable credential (a password, a TOTP
// code, an adopted device secret), reserved with Begin. It counts against
// its keys until it ends with Fail or Release; it belongs to the goroutine
// that checks the credential.
type Attempt struct {
	l       *Limiter
	keys    []string
	entries []*entry // reserved, one per non-empty key
	ended   bool
}

// Begin reserves an attempt on keys before its credential is checked. A key
// takes no more attempts than Failures at a time, its failures within
// Window and its attempts in flight counted together: a lockout that is
// looked at before a slow check and counted after it lets every parallel
// guess through that starts before the first one fails (issue 15).
//
// While a key is locked out, Begin returns nil and the remaining lockout,
// and the caller refuses the attempt unchecked. While a key is full of
// attempts in flight, Begin waits for one to end: when they fail the key is
// locked out and so is this attempt; when they succeed it goes ahead, so a
// client that opens several connections at once with a right password
// (a browser through the proxy) is not refused. After maxAttemptWait it
// gives up and returns the lockout that the attempts in flight would start.
// When ctx ends while it waits (the client hung up), it returns ctx's error
// and no attempt.
//
// The empty key is ignored. The caller ends the attempt with exactly one of
// Fail and Release.
func (l *Limiter) Begin(ctx context.Context, keys ...string) (*Attempt, time.Duration, error) {
	var timeout <-chan time.Time
	for {
		now := l.now()
		l.mu.Lock()
		locked, busy := l.admit(now, keys)
		if locked > 0 {
			l.mu.Unlock()
			return nil, locked, nil
		}
		if busy == 0 {
			a := l.reserve(now, keys)
			l.mu.Unlock()
			return a, 0, nil
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		l.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(l.maxWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, busy, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// admit returns the longest lockout in force among keys at now, and, if
// none, the longest lockout that their attempts in flight would start by
// failing when a key has no room for another attempt: 0, 0 means the
// attempt may begin. l.mu is held.
func (l *Limiter) admit(now time.Duration, keys []string) (locked, busy time.Duration) {
	for _, k := range keys {
		e := l.keys[k]
		switch {
		case e == nil:
		case now < e.lockedUntil:
			locked = max(locked, e.lockedUntil-now)
		default:
			l.forgetOld(e, now)
			if e.n+e.inflight >= l.cfg.Failures {
				busy = max(busy, l.lockout(l.level(e, now)))
			}
		}
	}
	return locked, busy
}

// reserve counts an attempt in flight on each key. l.mu is held.
func (l *Limiter) reserve(now time.Duration, keys []string) *Attempt {
	a := &Attempt{l: l, keys: keys, entries: make([]*entry, 0, len(keys))}
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := l.keys[k]
		if e == nil {
			e = l.add(k, now)
		}
		e.inflight++
		a.entries = append(a.entries, e)
	}
	return a
}

// Fail ends the attempt as a failed check: a failure of each of its keys
// and of the keys in more, which it did not reserve (a key that only counts,
// such as the address of a device that is not refused unchecked), counted
// as Failure counts them. It is one step, so no other attempt can begin in
// between the end of this one and its failure.
func (a *Attempt) Fail(more ...string) Failed {
	l := a.l
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.ended {
		return Failed{}
	}
	f := l.record(now, a.keys)
	if len(more) > 0 {
		g := l.record(now, more)
		f.Wait, f.Started = max(f.Wait, g.Wait), f.Started || g.Started
	}
	a.end(now)
	return f
}

// Release ends the attempt without a failure: the credential was right, or
// could not be checked (the store failed, or the client went away while
// the check waited for the argon2id gate: neither a failure nor a success). A right one's caller also calls Success for the
// keys whose failures it forgets.
func (a *Attempt) Release() {
	l := a.l
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !a.ended {
		a.end(now)
	}
}

// end releases the attempt's entries, drops those that no longer matter,
// and wakes Begin's waiters. l.mu is held.
func (a *Attempt) end(now time.Duration) {
	a.ended = true
	l := a.l
	for _, e := range a.entries {
		e.inflight--
		// An entry an attempt created and nothing else needs (an address
		// that logged in) goes now, rather than fill the table. One that
		// was dropped meanwhile (Success) is not in the table any more.
		if l.idle(e, now) && l.keys[e.key] == e {
			l.remove(e)
		}
	}
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// FailureUnlessLocked records a failure of keys, checked without an
// attempt (a token, an enrolment key, a generated device secret: random
// enough to be checked even during a lockout), unless one of keys is locked
// out already: then it records nothing, and the caller answers the lockout
// without auditing the failure. Either way, it returns the lockouts.
func (l *Limiter) FailureUnlessLocked(keys ...string) Failed {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var locked time.Duration
	for _, k := range keys {
		if e := l.keys[k]; e != nil {
			locked = max(locked, e.lockedUntil-now)
		}
	}
	if locked > 0 {
		return Failed{Wait: locked}
	}
	return l.record(now, keys)
}
