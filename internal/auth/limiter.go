package auth

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero fields of LimiterConfig.
const (
	DefaultFailures   = 5
	DefaultWindow     = time.Minute
	DefaultLockout    = time.Minute
	DefaultMaxLockout = time.Hour
	DefaultMaxKeys    = 100000
)

// LimiterConfig tunes a Limiter. Zero fields take the defaults above.
type LimiterConfig struct {
	// Failures within Window lock a key out.
	Failures int
	// Window is the sliding time span in which Failures are counted.
	Window time.Duration
	// Lockout is a key's first lockout. Each further lockout of the same
	// key doubles it, up to MaxLockout.
	Lockout time.Duration
	// MaxLockout caps a lockout. A key whose lockouts have doubled goes
	// back to Lockout once MaxLockout has passed without failures after
	// its last lockout ended.
	MaxLockout time.Duration
	// MaxKeys bounds the keys remembered; see Limiter for what happens
	// when they are all in use.
	MaxKeys int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Validate reports negative fields and a MaxLockout below Lockout, which New
// would quietly correct.
func (c LimiterConfig) Validate() error {
	var errs []error
	if c.Failures < 0 {
		errs = append(errs, errors.New("throttle: Failures is negative"))
	}
	if c.Window < 0 || c.Lockout < 0 || c.MaxLockout < 0 {
		errs = append(errs, errors.New("throttle: a duration is negative"))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, errors.New("throttle: MaxKeys is negative"))
	}
	c = c.withDefaults()
	if c.MaxLockout < c.Lockout {
		errs = append(errs, errors.New("throttle: MaxLockout is below Lockout"))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero and negative fields set to their
// defaults.
func (c LimiterConfig) withDefaults() LimiterConfig {
	if c.Failures <= 0 {
		c.Failures = DefaultFailures
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Lockout <= 0 {
		c.Lockout = DefaultLockout
	}
	if c.MaxLockout <= 0 {
		c.MaxLockout = DefaultMaxLockout
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// A Limiter counts failures per key and locks keys out. It is safe for
// concurrent use; one mutex guards it, as it sits on the authentication
// path, not the byte path.
//
// A guessable credential is checked inside an Attempt (Begin), which counts
// against its keys while it is in flight, so that parallel guesses cannot
// all get past the lockout before the first of them has failed.
//
// Keys are opaque strings; UserKey and AddrKey make the usual ones. The empty
// key is ignored, so AddrKey of an unknown address costs nothing and locks
// nobody out.
//
// Memory is bounded by MaxKeys: about 180 bytes plus the key's own bytes
// per remembered key (measured with the default Failures), about 20 MB at
// the default 100,000. When a new key finds the table full, the Limiter
// forgets every key that no longer matters (not locked out, no failure
// within Window, lockouts decayed, no attempt in flight); if that frees
// less than a sixteenth of the table, it also forgets the keys whose last
// failure is oldest, locked out or not, but not those with an attempt in
// flight (so the table exceeds MaxKeys by at most the attempts in flight).
// The trade-off: the table cannot grow beyond that, and whoever sprays keys
// only evicts keys in the order they last failed, so releasing one locked
// key early takes on the order of MaxKeys failed attempts made after that
// key's last failure — attempts that lock out each address making more
// than Failures of them — and buys that key only Failures more guesses, at
// its first lockout level again.
type Limiter struct {
	cfg  LimiterConfig
	base time.Time // offsets in entries are from here, so they stay monotonic

	// maxWait bounds how long Begin waits for the attempts in flight on a
	// key: maxAttemptWait.
	maxWait time.Duration

	mu   sync.Mutex
	keys map[string]*entry
	lru  entry         // sentinel: lru.next is the most recently failed, lru.prev the least
	wake chan struct{} // closed when an attempt ends, if Begin is waiting; else nil
}

// entry is what a Limiter knows about one key. Times are offsets from
// Limiter.base.
type entry struct {
	key        string
	prev, next *entry // in Limiter.lru

	// times is a ring of the failures within the window, oldest at head.
	times []time.Duration
	head  int
	n     int

	last        time.Duration // the latest failure
	lockedUntil time.Duration // end of the lockout; in the past when not locked
	level       int           // lockouts so far; the next lasts Lockout<<level, capped
	inflight    int           // attempts begun and not ended (Begin)
}

// New returns a Limiter. Zero fields of cfg take their defaults; so do
// negative ones, and a MaxLockout below Lockout is raised to it (Validate
// reports both).
func NewLimiter(cfg LimiterConfig) *Limiter {
	cfg = cfg.withDefaults()
	cfg.MaxLockout = max(cfg.MaxLockout, cfg.Lockout)
	l := &Limiter{cfg: cfg, base: cfg.Now(), maxWait: maxAttemptWait, keys: make(map[string]*entry)}
	l.lru.next, l.lru.prev = &l.lru, &l.lru
	return l
}

// now returns the current offset from base, never negative.
func (l *Limiter) now() time.Duration {
	return max(l.cfg.Now().Sub(l.base), 0)
}

// Blocked returns the longest lockout remaining among keys, 0 if none is
// locked out. It only looks: a check of a guessable credential begins an
// Attempt instead (Begin), which counts until the check ends.
func (l *Limiter) Blocked(keys ...string) time.Duration {
	now := l.now()
	var d time.Duration
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if e := l.keys[k]; e != nil {
			d = max(d, e.lockedUntil-now)
		}
	}
	return d
}

// Failure records one failure for each key. A key that reaches Failures
// failures within Window is locked out, for Lockout the first time and
// twice as long each further time, up to MaxLockout. Failure returns the
// longest lockout now in force among keys, 0 if none.
//
// A failure of a key already locked out is not counted: callers refuse
// attempts during a lockout without checking them, so there is nothing to
// count, and a caller that does call Failure then cannot extend the lockout.
func (l *Limiter) Failure(keys ...string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.record(now, keys).Wait
}

// record is Failure with l.mu held, telling whether the failure started a
// lockout.
func (l *Limiter) record(now time.Duration, keys []string) Failed {
	var f Failed
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := l.keys[k]
		if e == nil {
			e = l.add(k, now)
		} else {
			l.unlink(e)
			l.pushFront(e)
		}
		locked := now < e.lockedUntil
		d := l.fail(e, now)
		f.Wait = max(f.Wait, d)
		f.Started = f.Started || !locked && d > 0
	}
	return f
}

// add remembers a new key, making room first if the table is full, at the
// front of the list.
func (l *Limiter) add(k string, now time.Duration) *entry {
	if len(l.keys) >= l.cfg.MaxKeys {
		l.makeRoom(now)
	}
	e := &entry{key: k, times: make([]time.Duration, l.cfg.Failures)}
	l.keys[k] = e
	l.pushFront(e)
	return e
}

// fail records a failure of e at now and returns e's remaining lockout.
func (l *Limiter) fail(e *entry, now time.Duration) time.Duration {
	if now < e.lockedUntil {
		return e.lockedUntil - now
	}
	e.level = l.level(e, now)
	e.last = now
	l.forgetOld(e, now)
	e.times[(e.head+e.n)%len(e.times)] = now
	e.n++
	if e.n < l.cfg.Failures {
		return 0
	}
	d := l.lockout(e.level)
	if d < l.cfg.MaxLockout {
		e.level++
	}
	e.lockedUntil = now + d
	e.head, e.n = 0, 0
	return d
}

// level returns e's lockout level at now: 0 again once MaxLockout has
// passed without failures since its last lockout ended.
func (l *Limiter) level(e *entry, now time.Duration) int {
	if e.level > 0 && now-max(e.last, e.lockedUntil) >= l.cfg.MaxLockout {
		return 0
	}
	return e.level
}

// forgetOld drops e's failures that have left the window at now.
func (l *Limiter) forgetOld(e *entry, now time.Duration) {
	for e.n > 0 && now-e.times[e.head] >= l.cfg.Window {
		e.head = (e.head + 1) % len(e.times)
		e.n--
	}
}

// lockout returns the lockout at level: Lockout doubled level times, at
// most MaxLockout.
func (l *Limiter) lockout(level int) time.Duration {
	d := l.cfg.Lockout
	for range level {
		if d >= l.cfg.MaxLockout/2 {
			return l.cfg.MaxLockout
		}
		d *= 2
	}
	return min(d, l.cfg.MaxLockout)
}

// Success forgets the failures of keys and their lockout level, so that
// their next lockout is the first one again. A lockout in force stays until
// it ends: a credential that got past it (a token is checked even then)
// does not unlock the key for whoever is guessing the password, and the
// key's attempts in flight stay counted.
func (l *Limiter) Success(keys ...string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		e := l.keys[k]
		if e == nil {
			continue
		}
		if now < e.lockedUntil || e.inflight > 0 {
			e.level, e.head, e.n = 0, 0, 0
			continue
		}
		l.remove(e)
	}
}

// idle reports whether e no longer matters at now: forgetting it changes
// nothing.
func (l *Limiter) idle(e *entry, now time.Duration) bool {
	switch {
	case e.inflight > 0, now < e.lockedUntil:
		return false
	case e.n > 0 && now-e.last < l.cfg.Window:
		return false
	case e.level > 0 && now-max(e.last, e.lockedUntil) < l.cfg.MaxLockout:
		return false
	}
	return true
}

// makeRoom frees entries when the table is full: all idle ones, then, if
// that freed less than a sixteenth of MaxKeys, the least recently failed
// that have no attempt in flight (an attempt holds its entries until it
// ends). Freeing a sixteenth at a time keeps the cost of the scan at about
// sixteen entries per new key while an attacker keeps the table full.
func (l *Limiter) makeRoom(now time.Duration) {
	for _, e := range l.keys {
		if l.idle(e, now) {
			l.remove(e)
		}
	}
	target := l.cfg.MaxKeys - max(l.cfg.MaxKeys/16, 1)
	for e := l.lru.prev; len(l.keys) > target && e != &l.lru; {
		prev := e.prev
		if e.inflight == 0 {
			l.remove(e)
		}
		e = prev
	}
}

func (l *Limiter) pushFront(e *entry) {
	e.prev, e.next = &l.lru, l.lru.next
	e.prev.next, e.next.prev = e, e
}

func (l *Limiter) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (l *Limiter) remove(e *entry) {
	l.unlink(e)
	delete(l.keys, e.key)
}

// UserKey is the key of a user name. User names are case-insensitive, so a
// guesser cannot reset the count by changing case.
func UserKey(name string) string {
	return "user:" + strings.ToLower(name)
}

// DeviceKey is the key of a device id tried from a client address: an
// adopted device secret is locked out per pair (Guard.Device). An invalid
// address gives the id's key for all clients whose address is unknown.
func DeviceKey(id string, client netip.Addr) string {
	return "device:" + id + "@" + AddrKey(client)
}

// AddrKey is the key of a client address: an IPv4 address, or the /64 of an
// IPv6 address, since one host commonly holds a whole /64. IPv4-mapped IPv6
// addresses count as IPv4. An invalid address gives the empty key, which a
// Limiter ignores: lumping unknown clients together would let one lock all
// of them out.
func AddrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return "addr:" + a.String()
	}
	p, _ := a.Prefix(64) // cannot fail: a is IPv6
	return "addr:" + p.String()
}
