package store

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// argonGate bounds how many argon2id computations a store runs at once.
// Each takes up to argonMemory (19 MiB) and 37 ms of one CPU; after a
// restart every adopted device's agent reconnects within seconds, and
// without a bound n of them would take n×19 MiB at once. More computations
// than CPUs gain nothing, so the bound is GOMAXPROCS: a check waits for a
// slot rather than allocate.
//
// A check waits only while its context lives, and looks at it once more
// with the slot taken: a request whose client has hung up or timed out is
// not worth 8 MiB and milliseconds of CPU (issue 16: after a storm of
// 10,000 agents the reflector stayed at 180 % CPU for attempts whose
// clients had given up long before).
type argonGate struct {
	slots chan struct{}

	// runs counts computations started through the gate; waiting counts
	// the checks queued for a slot now. Tests and the metrics read them.
	runs    atomic.Uint64
	waiting atomic.Int64

	// hook, when set (tests only), runs inside the gate, holding the slot,
	// before the context is looked at and the computation runs.
	hook atomic.Pointer[func()]
}

// newArgonGate returns a gate for runtime.GOMAXPROCS(0) computations.
func newArgonGate() *argonGate {
	return &argonGate{slots: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// do runs f, an argon2id computation, once a slot is free. It returns
// ctx's error, without running f, when ctx ends first or has ended by the
// time the slot is taken.
func (g *argonGate) do(ctx context.Context, f func()) error {
	select {
	case g.slots <- struct{}{}:
	default:
		g.waiting.Add(1)
		select {
		case g.slots <- struct{}{}:
			g.waiting.Add(-1)
		case <-ctx.Done():
			g.waiting.Add(-1)
			return ctx.Err()
		}
	}
	defer func() { <-g.slots }()
	if h := g.hook.Load(); h != nil {
		(*h)()
	}
	// A slot freed at the moment ctx ended may have won the select above,
	// and a slot is a CPU's worth of work: look once more.
	if err := ctx.Err(); err != nil {
		return err
	}
	g.runs.Add(1)
	f()
	return nil
}

// hashPassword is the package's hashPassword run through the gate. Hashing
// is an admin's change, not a client's request: it waits as long as it takes.
func (g *argonGate) hashPassword(password string) (hash string, err error) {
	g.do(context.Background(), func() { hash, err = hashPassword(password) })
	return hash, err
}

// hashDeviceSecret hashes an adopted device secret (deviceArgonTime and
// deviceArgonMemory) through the gate, as hashPassword does.
func (g *argonGate) hashDeviceSecret(secret string) (hash string, err error) {
	g.do(context.Background(), func() { hash, err = hashArgon2id(secret, deviceArgonTime, deviceArgonMemory) })
	return hash, err
}

// verifyPassword is the package's verifyPassword run through the gate
// while ctx lives; when ctx ends first, the error is ctx's.
func (g *argonGate) verifyPassword(ctx context.Context, encoded, password string) (ok bool, err error) {
	if gateErr := g.do(ctx, func() { ok, err = verifyPassword(encoded, password) }); gateErr != nil {
		return false, gateErr
	}
	return ok, err
}

// MeasureDeviceCheck returns what one argon2id check of an adopted device
// secret costs this machine now, in time of one CPU: the least of three
// computations, run outside any gate. The reflector sizes its admission of
// agent handshakes with it at start.
//
// A collection before each lets the next computation reuse the memory of
// the one before: a process's first computations fault in fresh pages for
// their 8 MiB, which made one seem 43 ms instead of about 8 on a 2-core
// VM, where a running reflector's heap has the pages already.
func MeasureDeviceCheck() time.Duration {
	best := time.Duration(math.MaxInt64)
	for range 3 {
		runtime.GC()
		start := time.Now()
		argon2.IDKey([]byte("calibration"), make([]byte, argonSaltLen), deviceArgonTime, deviceArgonMemory, argonThreads, argonKeyLen)
		best = min(best, time.Since(start))
	}
	return best
}

// ArgonStats is what the store's argon2id gate has done: the computations
// run since Open, and the checks waiting for a CPU now.
type ArgonStats struct {
	Runs    uint64
	Waiting int64
}

// ArgonStats reports the argon2id gate's counts, for the metrics.
func (s *Store) ArgonStats() ArgonStats {
	return ArgonStats{Runs: s.argon.runs.Load(), Waiting: s.argon.waiting.Load()}
}

// SetArgonHook makes every check that takes a slot of the argon2id gate
// run f first, holding the slot until f returns; nil removes it. It exists for
// tests of the packages above the store (a handshake held in the gate),
// and has no use in a running reflector.
func (s *Store) SetArgonHook(f func()) {
	if f == nil {
		s.argon.hook.Store(nil)
		return
	}
	s.argon.hook.Store(&f)
}

// secretCache remembers the adopted device secrets that passed an argon2id
// check, so an agent that reconnects (after every network blip, after every
// restart of the reflector) costs an HMAC rather than 8 MiB and 7.5 ms of argon2id.
//
// It holds one fixed-size entry per device: HMAC-SHA256 under a key drawn
// at Open of the stored hash, a NUL and the secret. Neither the secret nor
// anything that can be checked against guesses without the key is kept, a
// secret that is rotated or replaced misses because the stored hash (with
// its random salt) is part of the MAC, and a wrong secret misses and is
// checked with argon2id as on a cold start. Entries are dropped when their
// device is removed or given a new secret; an entry left by a check that
// raced with such a change names a stored hash no record has any more, so
// it can never match.
type secretCache struct {
	key     [sha256.Size]byte
	entries sync.Map // device id → *[sha256.Size]byte
}

// newSecretCache returns an empty cache with a fresh random key.
func newSecretCache() (*secretCache, error) {
	c := new(secretCache)
	if _, err := rand.Read(c.key[:]); err != nil {
		return nil, fmt.Errorf("device secret cache key: %w", err)
	}
	return c, nil
}

// mac returns the entry for secret checked against stored.
func (c *secretCache) mac(stored, secret string) *[sha256.Size]byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(stored))
	m.Write([]byte{0}) // a stored hash holds no NUL, so the pair is unambiguous
	m.Write([]byte(secret))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	return &sum
}

// hit reports whether secret passed a check against stored for device id
// before. The comparison takes constant time.
func (c *secretCache) hit(id, stored, secret string) bool {
	v, ok := c.entries.Load(id)
	if !ok {
		return false
	}
	return hmac.Equal(v.(*[sha256.Size]byte)[:], c.mac(stored, secret)[:])
}

// put remembers that secret passed a check against stored for device id.
func (c *secretCache) put(id, stored, secret string) {
	c.entries.Store(id, c.mac(stored, secret))
}

// forget drops the entry of device id.
func (c *secretCache) forget(id string) {
	c.entries.Delete(id)
}
