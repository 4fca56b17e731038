package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mustCreateToken creates a token and fails the test if it cannot.
func mustCreateToken(t *testing.T, s *Store, tok Token) (string, Token) {
	t.Helper()
	token, rec, err := s.CreateToken(tok)
	if err != nil {
		t.Fatalf("CreateToken(%+v): %v", tok, err)
	}
	return token, rec
}

// rawToken reads the stored token record, bypassing in-memory use times.
func rawToken(t *testing.T, s *Store, id string) tokenRecord {
	t.Helper()
	var r tokenRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getToken(tx, id)
		return err
	})
	if err != nil {
		t.Fatalf("raw token %s: %v", id, err)
	}
	return r
}

func TestCreateTokenIsPrefixAnd24RandomBytes(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop", Devices: "pump-*", Expires: now.Add(time.Hour)})
	if !strings.HasPrefix(token, "rfl_") || len(token) != 36 || !LooksLikeToken(token) {
		t.Fatalf("token %q: want rfl_ and 32 base64url characters", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(token[4:])
	if err != nil || len(b) != 24 {
		t.Fatalf("token body: %d bytes, %v; want 24", len(b), err)
	}
	if rec.ID != hex.EncodeToString(b[:8]) {
		t.Errorf("ID %q, want the first 8 bytes in hex %x", rec.ID, b[:8])
	}
	if rec.User != "alice" || rec.Name != "laptop" || rec.Devices != "pump-*" ||
		!rec.Created.Equal(*now) || !rec.Expires.Equal(now.Add(time.Hour)) || !rec.LastUsed.IsZero() {
		t.Errorf("record = %+v", rec)
	}
	token2, rec2 := mustCreateToken(t, s, Token{User: "alice", Name: "phone"})
	b2, _ := base64.RawURLEncoding.DecodeString(token2[4:])
	if rec2.ID == rec.ID || bytes.Equal(b2[8:], b[8:]) {
		t.Errorf("two tokens share an id or secret: %q %q", token, token2)
	}
	if !rec2.Expires.IsZero() {
		t.Errorf("Expires = %v, want zero (never) when not given", rec2.Expires)
	}
}

func TestCreateTokenStoresOnlySecretHash(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	body, _ := base64.RawURLEncoding.DecodeString(token[4:])
	secret := body[8:]
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		raw = bytes.Clone(tx.Bucket(bucketTokens).Get([]byte(rec.ID)))
		return nil
	})
	if err != nil || raw == nil {
		t.Fatalf("no record under the hex id %q: %v", rec.ID, err)
	}
	for _, leak := range [][]byte{[]byte(token), []byte(token[20:]), secret, []byte(hex.EncodeToString(secret)), []byte(base64.StdEncoding.EncodeToString(secret))} {
		if bytes.Contains(raw, leak) {
			t.Errorf("stored record %s contains the secret", raw)
		}
	}
	if got, want := rawToken(t, s, rec.ID).SecretHash, hashSecret(string(secret)); got != want {
		t.Errorf("SecretHash = %q, want %q (sha256 of the 16 secret bytes)", got, want)
	}
}

func TestCreateTokenValidates(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	for _, name := range []string{"alice", "bob"} {
		if err := s.AddUser(name, "pw", RoleUser, nil); err != nil {
			t.Fatal(err)
		}
	}
	mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	for _, tc := range []struct {
		desc string
		tok  Token
		want error
	}{
		{"unknown user", Token{User: "carol", Name: "x"}, ErrNotFound},
		{"malformed user", Token{User: "a b", Name: "x"}, ErrNotFound},
		{"name taken", Token{User: "alice", Name: "laptop"}, ErrExists},
		{"empty name", Token{User: "alice", Name: ""}, ErrInvalid},
		{"name with space", Token{User: "alice", Name: "my laptop"}, ErrInvalid},
		{"name 65 chars", Token{User: "alice", Name: strings.Repeat("n", 65)}, ErrInvalid},
		{"bad pattern", Token{User: "alice", Name: "x", Devices: "pump-["}, ErrInvalid},
		{"bad escape", Token{User: "alice", Name: "x", Devices: `pump\`}, ErrInvalid},
		{"control character", Token{User: "alice", Name: "x", Devices: "pump\n"}, ErrInvalid},
		{"long pattern", Token{User: "alice", Name: "x", Devices: strings.Repeat("*", 129)}, ErrInvalid},
		{"expired", Token{User: "alice", Name: "x", Expires: now.Add(-time.Second)}, ErrInvalid},
		{"expires now", Token{User: "alice", Name: "x", Expires: *now}, ErrInvalid},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			token, _, err := s.CreateToken(tc.tok)
			if !errors.Is(err, tc.want) {
				t.Errorf("CreateToken(%+v) = %q, %v; want %v", tc.tok, token, err, tc.want)
			}
		})
	}
	// Names are unique per user, not across users.
	mustCreateToken(t, s, Token{User: "bob", Name: "laptop", Devices: "[a-z]*-?"})
	toks, err := s.Tokens("")
	if err != nil || len(toks) != 2 {
		t.Errorf("Tokens() = %+v, %v; want the 2 valid tokens only", toks, err)
	}
}

func TestTokensSortedByUserThenName(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"bob", "alice"} {
		if err := s.AddUser(name, "pw", RoleUser, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, tok := range []Token{{User: "bob", Name: "b"}, {User: "alice", Name: "z"}, {User: "bob", Name: "a"}, {User: "alice", Name: "c"}} {
		mustCreateToken(t, s, tok)
	}
	names := func(toks []Token) []string {
		var out []string
		for _, t := range toks {
			out = append(out, t.User+"/"+t.Name)
		}
		return out
	}
	all, err := s.Tokens("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(all), []string{"alice/c", "alice/z", "bob/a", "bob/b"}; !slices.Equal(got, want) {
		t.Errorf("Tokens(\"\") = %q, want %q", got, want)
	}
	bobs, err := s.Tokens("bob")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(bobs), []string{"bob/a", "bob/b"}; !slices.Equal(got, want) {
		t.Errorf("Tokens(bob) = %q, want %q", got, want)
	}
	if none, err := s.Tokens("nobody"); err != nil || len(none) != 0 {
		t.Errorf("Tokens(nobody) = %+v, %v; want none", none, err)
	}
}

func TestRevokeTokenDeletesIt(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	if _, err := s.Authenticate(context.Background(), "alice", token); err != nil {
		t.Fatal(err)
	}
	got, err := s.RevokeToken(rec.ID)
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if got.ID != rec.ID || got.Name != "laptop" || got.User != "alice" {
		t.Errorf("RevokeToken returned %+v, want %+v", got, rec)
	}
	if _, err := s.Authenticate(context.Background(), "alice", token); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Authenticate with revoked token = %v, want ErrBadCredentials", err)
	}
	if toks, _ := s.Tokens(""); len(toks) != 0 {
		t.Errorf("Tokens after revoke = %+v", toks)
	}
	for _, id := range []string{rec.ID, "", "zz", strings.Repeat("0", 16), strings.ToUpper(rec.ID), "\xff"} {
		if _, err := s.RevokeToken(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeToken(%q) = %v, want ErrNotFound", id, err)
		}
	}
	// The name is free again.
	mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
}

func TestLooksLikeToken(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"rfl_" + strings.Repeat("A", 32), true},
		{"rfl_" + strings.Repeat("A", 31), false},
		{"rfl_" + strings.Repeat("A", 33), false},
		{"rfe_" + strings.Repeat("A", 32), false},
		{"RFL_" + strings.Repeat("A", 32), false},
		{"correct horse battery staple", false},
		{"", false},
	} {
		if got := LooksLikeToken(tc.s); got != tc.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// Last use is kept in memory on every use and written at most once a
// minute per token.
func TestTokenLastUseWrittenAtMostOnceAMinute(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	use := func() {
		t.Helper()
		if _, err := s.AuthenticateToken(token); err != nil {
			t.Fatal(err)
		}
		if err := s.tokenUse.flush(); err != nil {
			t.Fatal(err)
		}
	}
	listed := func() time.Time {
		t.Helper()
		toks, err := s.Tokens("alice")
		if err != nil || len(toks) != 1 {
			t.Fatalf("Tokens = %+v, %v", toks, err)
		}
		return toks[0].LastUsed
	}
	if got := listed(); !got.IsZero() {
		t.Errorf("LastUsed of an unused token = %v, want zero", got)
	}

	t0 := *now
	use()
	if got := rawToken(t, s, rec.ID).LastUsed; !got.Equal(t0) {
		t.Errorf("stored LastUsed after first use = %v, want %v", got, t0)
	}
	*now = t0.Add(59 * time.Second)
	use()
	if got := rawToken(t, s, rec.ID).LastUsed; !got.Equal(t0) {
		t.Errorf("stored LastUsed 59s later = %v, want still %v", got, t0)
	}
	if got := listed(); !got.Equal(*now) {
		t.Errorf("listed LastUsed = %v, want the newest use %v", got, *now)
	}
	*now = t0.Add(time.Minute)
	use()
	if got := rawToken(t, s, rec.ID).LastUsed; !got.Equal(*now) {
		t.Errorf("stored LastUsed a minute later = %v, want %v", got, *now)
	}
	// A failed use is not a use.
	*now = t0.Add(3 * time.Minute)
	if _, err := s.Authenticate(context.Background(), "bob", token); err == nil {
		t.Fatal("alice's token accepted for bob")
	}
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	if got := listed(); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("LastUsed after a refused use = %v, want %v", got, t0.Add(time.Minute))
	}
}

// A use marked for writing races with a flush that already wrote a newer
// time: the next flush must not write again within the minute.
func TestTokenLastUseFlushRechecksStoredTime(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	_, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	r := rawToken(t, s, rec.ID)
	s.recordTokenUse(&r, *now)
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	// r still holds the stale (zero) stored time, as a check that read it
	// before the flush would.
	s.recordTokenUse(&r, now.Add(10*time.Second))
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	if got := rawToken(t, s, rec.ID).LastUsed; !got.Equal(*now) {
		t.Errorf("stored LastUsed = %v, want %v: written twice within a minute", got, *now)
	}
}

func TestTokenLastUseWrittenOnClose(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	if _, err := s.Authenticate(context.Background(), "alice", token); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := open(s.Dir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	toks, err := s2.Tokens("alice")
	if err != nil || len(toks) != 1 || !toks[0].LastUsed.Equal(*now) || toks[0].ID != rec.ID {
		t.Errorf("Tokens after reopen = %+v, %v; want LastUsed %v", toks, err, *now)
	}
}

func TestTokenUseOfRevokedTokenIsDropped(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	if _, err := s.AuthenticateToken(token); err != nil {
		t.Fatal(err)
	}
	// Delete behind RevokeToken's back, so the in-memory entry is left for
	// the flush to find without a record.
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Delete([]byte(rec.ID)) })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTokens).Get([]byte(rec.ID)) != nil {
			t.Error("flush re-created a deleted token")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := held(s.tokenUse); n != 0 {
		t.Errorf("%d in-memory use times left for deleted tokens, want 0", n)
	}
}

func TestRemoveUserRemovesTheirTokens(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"alice", "bob"} {
		if err := s.AddUser(name, "pw", RoleUser, nil); err != nil {
			t.Fatal(err)
		}
	}
	aliceToken, _ := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	mustCreateToken(t, s, Token{User: "alice", Name: "phone"})
	bobToken, _ := mustCreateToken(t, s, Token{User: "bob", Name: "laptop"})
	if err := s.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	toks, err := s.Tokens("")
	if err != nil || len(toks) != 1 || toks[0].User != "bob" {
		t.Errorf("Tokens after RemoveUser(alice) = %+v, %v; want bob's only", toks, err)
	}
	// A new user of the same name does not inherit them.
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(context.Background(), "alice", aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("removed user's token for a new user of that name = %v, want ErrBadCredentials", err)
	}
	if _, err := s.Authenticate(context.Background(), "bob", bobToken); err != nil {
		t.Errorf("other user's token after RemoveUser: %v", err)
	}
}

// FuzzParseToken: parseToken reads bytes from the network (proxy passwords,
// bearer headers) and must never panic; what it accepts is exactly the
// shape CreateToken makes.
func FuzzParseToken(f *testing.F) {
	f.Add("rfl_" + strings.Repeat("A", 32))
	f.Add("rfl_" + strings.Repeat("_", 32))
	f.Add("rfl_" + strings.Repeat("+", 32))
	f.Add("rfl_" + strings.Repeat("A", 30) + "==")
	f.Add("rfl_\x00\xff")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		id, secret, ok := parseRandomKey(TokenPrefix, token)
		if !ok {
			return
		}
		body, err := hex.DecodeString(id)
		if err != nil || len(body) != 8 || len(secret) != 16 {
			t.Fatalf("parseToken(%q) = %q, %x", token, id, secret)
		}
		if again := TokenPrefix + base64.RawURLEncoding.EncodeToString(append(body, secret...)); again != token {
			t.Errorf("parseToken(%q) accepted a token that encodes back as %q", token, again)
		}
	})
}

// Exercised under -race: token checks record uses while the writer
// flushes them and tokens are listed, created and revoked.
func TestTokenUseConcurrentWithFlush(t *testing.T) {
	s, err := open(t.TempDir(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, _ := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				if _, err := s.Authenticate(context.Background(), "alice", token); err != nil {
					t.Error(err)
				}
				if _, err := s.Tokens(""); err != nil {
					t.Error(err)
				}
				if j%10 == 0 {
					_, rec, err := s.CreateToken(Token{User: "alice", Name: fmt.Sprintf("t%d-%d", i, j)})
					if err != nil {
						t.Error(err)
						continue
					}
					if _, err := s.RevokeToken(rec.ID); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	toks, err := s.Tokens("alice")
	if err != nil || len(toks) != 1 || toks[0].LastUsed.IsZero() {
		t.Errorf("Tokens after concurrent use = %+v, %v; want one used token", toks, err)
	}
}
