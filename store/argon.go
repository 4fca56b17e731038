package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// argonGate bounds how many argon2id computations a store runs at once.
// Each takes up to argonMemory (19 MiB) and 37 ms of one CPU; after a
// restart every adopted device's agent reconnects within seconds, and
// without a bound n of them would take n×19 MiB at once. More computations
// than CPUs gain nothing, so the bound is GOMAXPROCS: a check waits for a
// slot rather than allocate.
type argonGate struct {
	slots chan struct{}

	// runs counts computations started through the gate. Tests read it to
	// see whether a check hashed or was answered from a cache.
	runs atomic.Uint64

	// hook, when set (tests only, before the store is shared), runs inside
	// the gate before each computation.
	hook func()
}

// newArgonGate returns a gate for runtime.GOMAXPROCS(0) computations.
func newArgonGate() *argonGate {
	return &argonGate{slots: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// do runs f, an argon2id computation, once a slot is free.
func (g *argonGate) do(f func()) {
	g.slots <- struct{}{}
	defer func() { <-g.slots }()
	g.runs.Add(1)
	if g.hook != nil {
		g.hook()
	}
	f()
}

// hashPassword is the package's hashPassword run through the gate.
func (g *argonGate) hashPassword(password string) (hash string, err error) {
	g.do(func() { hash, err = hashPassword(password) })
	return hash, err
}

// hashDeviceSecret hashes an adopted device secret (deviceArgonTime and
// deviceArgonMemory) through the gate.
func (g *argonGate) hashDeviceSecret(secret string) (hash string, err error) {
	g.do(func() { hash, err = hashArgon2id(secret, deviceArgonTime, deviceArgonMemory) })
	return hash, err
}

// verifyPassword is the package's verifyPassword run through the gate.
func (g *argonGate) verifyPassword(encoded, password string) (ok bool, err error) {
	g.do(func() { ok, err = verifyPassword(encoded, password) })
	return ok, err
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
