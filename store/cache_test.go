package store

import (
	"fmt"
	"testing"
)

func TestCredCacheIgnoresResultReadBeforeInvalidation(t *testing.T) {
	c := newCredCache[credKey](cloneUser)
	key := newCredKey("alice", "old password")
	gen := c.generation() // a check starts and reads the record...
	c.invalidate()        // ...the password changes while it hashes...
	c.put(gen, key, User{Name: "alice"})
	if _, ok := c.get(key); ok {
		t.Error("result of a check that overlapped a password change was cached")
	}
	c.put(c.generation(), key, User{Name: "alice"})
	if _, ok := c.get(key); !ok {
		t.Error("result of a current check was not cached")
	}
}

func TestCredCacheDropsAllWhenFull(t *testing.T) {
	c := newCredCache[credKey](cloneUser)
	gen := c.generation()
	for i := range credCacheMax {
		c.put(gen, newCredKey(fmt.Sprint("user", i), "pw"), User{})
	}
	if n := c.len(); n != credCacheMax {
		t.Fatalf("len = %d, want %d", n, credCacheMax)
	}
	c.put(gen, newCredKey("one-more", "pw"), User{})
	if n := c.len(); n != 1 {
		t.Errorf("len after overflow = %d, want 1", n)
	}
}

func TestCredKeySeparatesNameFromPassword(t *testing.T) {
	if newCredKey("ab", "c") == newCredKey("a", "bc") {
		t.Error(`("ab","c") and ("a","bc") share a cache key`)
	}
}
