package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// ticketBytes is the randomness of a one-time code: 256 bits, so guessing
// one is hopeless and failures need no throttling.
const ticketBytes = 32

// tickets is a bounded in-memory table of one-time codes (hand-off codes,
// pending TOTP logins). Each code stands for a value until it expires or is
// redeemed once. Only a SHA-256 of a code is kept, so the table holds no
// secret and looking one up compares no secret bytes.
type tickets[T any] struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte]ticket[T]
}

type ticket[T any] struct {
	val     T
	expires time.Time
}

func newTickets[T any](max int) *tickets[T] {
	return &tickets[T]{max: max, m: make(map[[sha256.Size]byte]ticket[T])}
}

// issue returns a new code for v, valid until expires. A full table first
// drops its expired codes, then, if still full, the one expiring soonest:
// the table cannot grow, and whoever fills it (only users who passed a
// password can) spends their own codes first.
func (t *tickets[T]) issue(v T, now, expires time.Time) string {
	var b [ticketBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24)
	code := base64.RawURLEncoding.EncodeToString(b[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		t.evict(now)
	}
	t.m[sha256.Sum256([]byte(code))] = ticket[T]{val: v, expires: expires}
	return code
}

// evict makes room for one code. The caller holds t.mu.
func (t *tickets[T]) evict(now time.Time) {
	for k, e := range t.m {
		if !now.Before(e.expires) {
			delete(t.m, k)
		}
	}
	for len(t.m) >= t.max {
		var (
			oldest [sha256.Size]byte
			first  time.Time
		)
		for k, e := range t.m {
			if first.IsZero() || e.expires.Before(first) {
				oldest, first = k, e.expires
			}
		}
		delete(t.m, oldest)
	}
}

// redeem returns the value of code and forgets the code, if it was issued
// and has not expired. Any code presented is gone afterwards.
func (t *tickets[T]) redeem(code string, now time.Time) (T, bool) {
	var zero T
	if len(code) != base64.RawURLEncoding.EncodedLen(ticketBytes) {
		return zero, false
	}
	k := sha256.Sum256([]byte(code))
	t.mu.Lock()
	e, ok := t.m[k]
	delete(t.m, k)
	t.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return zero, false
	}
	return e.val, true
}

func (t *tickets[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
