package store

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

const (
	// credCacheTTL is how long a verified password is accepted without
	// argon2id. Proxy clients send Proxy-Authorization on every CONNECT.
	credCacheTTL = 60 * time.Second

	// credCacheMax bounds the cache. When it is full the whole cache is
	// dropped: refilling costs one argon2id per active user, and it keeps the
	// code free of an eviction order that an attacker could steer.
	credCacheMax = 10000
)

// credKey identifies a name/password pair without holding the password.
type credKey [sha256.Size]byte

func newCredKey(name, password string) credKey {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0}) // names never contain NUL, so the pair is unambiguous
	h.Write([]byte(password))
	var k credKey
	h.Sum(k[:0])
	return k
}

type credEntry struct {
	user    User
	expires time.Time
}

// credCache remembers successful password checks. Failures are never
// cached. Every write that changes users calls invalidate, which drops all
// entries and bumps the generation; a check that read the user record under
// an older generation may not store its result, so a password changed while
// a check was hashing cannot come back through the cache.
type credCache struct {
	now func() time.Time // time.Now; replaced in tests

	mu      sync.Mutex
	gen     uint64
	entries map[credKey]credEntry
}

func newCredCache() *credCache {
	return &credCache{now: time.Now, entries: make(map[credKey]credEntry)}
}

// generation returns the current generation, to be passed to put.
func (c *credCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns the cached user for k if the entry is present and fresh.
func (c *credCache) get(k credKey) (User, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return User{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, k)
		return User{}, false
	}
	return cloneUser(e.user), true
}

// put caches u under k unless the users changed since gen was read.
func (c *credCache) put(gen uint64, k credKey, u User) {
	expires := c.now().Add(credCacheTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= credCacheMax {
		clear(c.entries)
	}
	c.entries[k] = credEntry{user: cloneUser(u), expires: expires}
}

// invalidate drops every entry. Call it after a write that changes users
// has committed.
func (c *credCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cloneUser copies u so that neither the cache nor its callers share the
// Groups slice.
func cloneUser(u User) User {
	u.Groups = slices.Clone(u.Groups)
	return u
}
