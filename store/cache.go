package store

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

const (
	// credCacheTTL is how long a verified password or token is accepted
	// without checking it against its record again. Proxy clients send
	// Proxy-Authorization on every CONNECT, programs their bearer token on
	// every request.
	credCacheTTL = 60 * time.Second

	// credCacheMax bounds each cache. When one is full it is dropped whole:
	// refilling costs one check per active credential, and it keeps the
	// code free of an eviction order that an attacker could steer.
	credCacheMax = 10000
)

// credKey identifies a secret (with the name it came with, if any) without
// holding it.
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

// newTokenKey identifies a whole token string, id and secret, without
// holding it. A token with the right id and a wrong secret has another key.
func newTokenKey(token string) credKey {
	return sha256.Sum256([]byte(token))
}

type credEntry[V any] struct {
	val     V
	expires time.Time
}

// credCache remembers what the request path reads again and again:
// successful password checks (V is the User) and token checks (V is a
// cachedToken), keyed by a hash of the secret, and device records (keyed
// by id). Failures are never cached. Every write that changes what a
// cached value says calls invalidate (through Store.usersChanged,
// tokensChanged or devicesChanged), which drops all entries and bumps the
// generation; a check that read the records under an older generation may
// not store its result, so a password changed or a token revoked while a
// check was running cannot come back through the cache.
type credCache[K comparable, V any] struct {
	now   func() time.Time // time.Now; replaced in tests
	clone func(V) V        // copies a value so the cache and callers share nothing

	mu      sync.Mutex
	gen     uint64
	entries map[K]credEntry[V]
}

func newCredCache[K comparable, V any](clone func(V) V) *credCache[K, V] {
	return &credCache[K, V]{now: time.Now, clone: clone, entries: make(map[K]credEntry[V])}
}

// generation returns the current generation, to be passed to put.
func (c *credCache[K, V]) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns the value cached under k if the entry is present and fresh.
func (c *credCache[K, V]) get(k K) (V, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, k)
		var zero V
		return zero, false
	}
	return c.clone(e.val), true
}

// put caches v under k unless the records changed since gen was read.
func (c *credCache[K, V]) put(gen uint64, k K, v V) {
	expires := c.now().Add(credCacheTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= credCacheMax {
		clear(c.entries)
	}
	c.entries[k] = credEntry[V]{val: c.clone(v), expires: expires}
}

// update applies fn to the value cached under k, if any, keeping its
// expiry. It is for bookkeeping that does not change what the value
// grants (a token's last use), so it needs no generation.
func (c *credCache[K, V]) update(k K, fn func(*V)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		fn(&e.val)
		c.entries[k] = e
	}
}

// invalidate drops every entry. Call it after a write that changes what
// the cache holds has committed.
func (c *credCache[K, V]) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

func (c *credCache[K, V]) len() int {
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

// cachedToken is what a successful token check leaves in the token cache:
// the token's record without its secret hash, and its user as read with
// it. Everything a check decides on a cache hit — owner, expiry, device
// pattern — is in it.
type cachedToken struct {
	rec  tokenRecord // SecretHash is empty
	user User
}

func cloneCachedToken(t cachedToken) cachedToken {
	t.user = cloneUser(t.user)
	return t
}

// cloneDevice copies d so that neither the cache nor its callers share the
// Groups and Ports slices.
func cloneDevice(d Device) Device {
	d.Groups = slices.Clone(d.Groups)
	d.Ports = slices.Clone(d.Ports)
	return d
}
