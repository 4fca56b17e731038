package store

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The token cache (issue 21) must never let a request through that the
// records would refuse. Each test below warms the cache with a successful
// check first, then changes what the records say, then checks again.

// warmToken checks token once so the next check of it is a cache hit, and
// fails the test if that check fails or left nothing in the cache.
func warmToken(t *testing.T, s *Store, token string) Credential {
	t.Helper()
	c, err := s.AuthenticateToken(token)
	if err != nil {
		t.Fatalf("warming the cache: %v", err)
	}
	if s.tokens.len() == 0 {
		t.Fatal("a successful token check left nothing in the cache")
	}
	return c
}

// A hit does not read the token's record: changing it behind the store's
// back (no invalidation) goes unseen until the entry is dropped. This is
// what the other tests rely on to show that their change was seen because
// the cache was dropped, not because it was never used.
func TestTokenCheckIsCached(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Delete([]byte(s.aliceID)) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(s.aliceToken); err != nil {
		t.Fatalf("cache hit after the record went behind the store's back: %v", err)
	}
	s.tokensChanged()
	if _, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("check after the cache was dropped = %v, want ErrBadCredentials", err)
	}
}

func TestCachedTokenRevokedIsRefusedAtOnce(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(s.aliceID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("bearer check right after revocation = %v, want ErrBadCredentials", err)
	}
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("proxy check right after revocation = %v, want ErrBadCredentials", err)
	}
}

func TestCachedTokenOfRemovedUserIsRefusedAtOnce(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	if err := s.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if c, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token of a removed user = %+v, %v; want ErrBadCredentials", c, err)
	}
}

func TestCachedTokenFollowsRoleAndGroupsAtOnce(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	if err := s.SetUserRole("alice", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	c, err := s.AuthenticateToken(s.aliceToken)
	if err != nil || c.User.Role != RoleAdmin {
		t.Fatalf("after promotion: %+v, %v; want role admin", c.User, err)
	}
	if err := s.SetUserRole("alice", RoleUser); err != nil {
		t.Fatal(err)
	}
	addGroups(t, s.Store, "plant-a")
	if err := s.SetUserGroups("alice", []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	c, err = s.AuthenticateToken(s.aliceToken)
	if err != nil || c.User.Role != RoleUser || !slices.Equal(c.User.Groups, []string{"plant-a"}) {
		t.Fatalf("after demotion and regrouping: %+v, %v; want user in plant-a", c.User, err)
	}
	if c.Allows(Device{ID: "pump-1", Groups: []string{"ops"}}) {
		t.Error("a device of the group alice left is still allowed")
	}
}

func TestCachedTokenIsRefusedAtItsExpiry(t *testing.T) {
	s := newCredentialTestStore(t)
	*s.now = s.now.Add(24*time.Hour - time.Nanosecond)
	warmToken(t, s.Store, s.aliceToken)
	*s.now = s.now.Add(time.Nanosecond)
	if _, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrExpired) {
		t.Errorf("bearer check at expiry = %v, want ErrExpired", err)
	}
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); !errors.Is(err, ErrExpired) {
		t.Errorf("proxy check at expiry = %v, want ErrExpired", err)
	}
}

func TestCachedTokenKeepsItsDevicePattern(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	c, err := s.AuthenticateToken(s.aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Devices != "pump-*" || c.TokenID != s.aliceID {
		t.Errorf("cached credential = %+v, want token %s limited to pump-*", c, s.aliceID)
	}
	if c.Allows(Device{ID: "valve-1", Groups: []string{"ops"}}) {
		t.Error("cached token limited to pump-* allows valve-1")
	}
	if !c.Allows(Device{ID: "pump-1", Groups: []string{"ops"}}) {
		t.Error("cached token does not allow pump-1")
	}
}

// Whoever has a token cannot use it as another user's proxy password, also
// once it is cached — whichever way it was cached.
func TestCachedTokenOfAnotherUserStillFails(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bob", "Alice"} {
		if c, err := s.Authenticate(context.Background(), name, s.aliceToken); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("alice's cached token as %s's password = %+v, %v; want ErrBadCredentials", name, c, err)
		}
	}
}

// A token that matches a cached one in its id but not its secret is not a
// hit: the key is the whole token.
func TestCachedTokenWithWrongSecretFails(t *testing.T) {
	s := newCredentialTestStore(t)
	warmToken(t, s.Store, s.aliceToken)
	last := s.aliceToken[len(s.aliceToken)-1]
	other := byte('A')
	if last == other {
		other = 'B'
	}
	wrong := s.aliceToken[:len(s.aliceToken)-1] + string(other)
	if _, err := s.AuthenticateToken(wrong); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token with a cached id and a wrong secret = %v, want ErrBadCredentials", err)
	}
}

// The read-then-put race: a check that read the records before a
// revocation committed may not cache what it read.
func TestTokenCheckOverlappingRevocationIsNotCached(t *testing.T) {
	s := newCredentialTestStore(t)
	key := newTokenKey(s.aliceToken)
	gen := s.tokens.generation() // a check starts and reads the records...
	r := rawToken(t, s.Store, s.aliceID)
	u, err := s.User("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(s.aliceID); err != nil { // ...the token is revoked...
		t.Fatal(err)
	}
	s.tokens.put(gen, key, cachedToken{rec: r, user: u}) // ...and the check ends
	if _, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("revoked token after an overlapping check = %v, want ErrBadCredentials", err)
	}
}

// A hit records the use as a check of the records does: visible in Tokens
// at once, written about once a minute by the batch writer.
func TestCachedTokenUseIsRecorded(t *testing.T) {
	s := newCredentialTestStore(t)
	t0 := *s.now
	warmToken(t, s.Store, s.aliceToken)
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	listed := func() time.Time {
		t.Helper()
		toks, err := s.Tokens("alice")
		if err != nil || len(toks) != 1 {
			t.Fatalf("Tokens = %+v, %v", toks, err)
		}
		return toks[0].LastUsed
	}
	*s.now = t0.Add(30 * time.Second)
	if _, err := s.AuthenticateToken(s.aliceToken); err != nil {
		t.Fatal(err)
	}
	if got := listed(); !got.Equal(*s.now) {
		t.Errorf("listed last use after a hit = %v, want %v", got, *s.now)
	}
	if n := len(s.tokenUse.dirty); n != 0 {
		t.Errorf("a hit within the minute marked %d uses for writing, want 0", n)
	}
	*s.now = t0.Add(61 * time.Second)
	if _, err := s.AuthenticateToken(s.aliceToken); err != nil {
		t.Fatal(err)
	}
	if err := s.tokenUse.flush(); err != nil {
		t.Fatal(err)
	}
	if got := rawToken(t, s.Store, s.aliceID).LastUsed; !got.Equal(*s.now) {
		t.Errorf("stored last use after a hit a minute on = %v, want %v", got, *s.now)
	}
	*s.now = t0.Add(90 * time.Second)
	if _, err := s.AuthenticateToken(s.aliceToken); err != nil {
		t.Fatal(err)
	}
	if n := len(s.tokenUse.dirty); n != 0 {
		t.Errorf("a hit 29s after a written use marked %d uses for writing, want 0", n)
	}
}

// Every store operation that changes a user, a token or a device drops the
// token or the device cache once it has committed. A new writer that calls
// none of the drop functions fails TestEveryCachedRecordWriterDropsItsCache.
func TestEveryWriteOfACachedRecordDropsItsCache(t *testing.T) {
	for _, tc := range []struct {
		writer string // the writer TestEveryCachedRecordWriterDropsItsCache finds that this covers
		op     func(t *testing.T, s credentialTestStore) error
	}{
		{"RevokeToken", func(t *testing.T, s credentialTestStore) error { _, err := s.RevokeToken(s.aliceID); return err }},
		{"RemoveUser", func(t *testing.T, s credentialTestStore) error { return s.RemoveUser("alice") }},
		{"AddUser", func(t *testing.T, s credentialTestStore) error {
			return s.AddUser("carol", "carol-pw", RoleUser, nil)
		}},
		{"updateUserTx", func(t *testing.T, s credentialTestStore) error { return s.SetUserRole("alice", RoleAdmin) }},
		{"updateUserTx", func(t *testing.T, s credentialTestStore) error { return s.SetUserGroups("alice", nil) }},
		{"updateUserTx", func(t *testing.T, s credentialTestStore) error {
			return s.SetPassword("alice", "a new password")
		}},
		{"updateUserTx", func(t *testing.T, s credentialTestStore) error {
			_, err := s.BeginTOTP("alice", "test")
			return err
		}},
		{"RemoveDevice", func(t *testing.T, s credentialTestStore) error { return s.RemoveDevice("pump-1") }},
		{"updateDevice", func(t *testing.T, s credentialTestStore) error {
			_, err := s.UpdateDevice("pump-1", DeviceUpdate{Groups: &[]string{}})
			return err
		}},
		{"updateDevice", func(t *testing.T, s credentialTestStore) error { return s.SetDeviceDisabled("pump-1", true) }},
		{"updateDevice", func(t *testing.T, s credentialTestStore) error {
			_, err := s.RotateDeviceSecret("pump-1")
			return err
		}},
		{"ImportDevices", func(t *testing.T, s credentialTestStore) error {
			return s.ImportDevices([]DeviceImport{{Device: Device{ID: "pump-2"}, Secret: "a long enough secret"}})
		}},
		{"pruneTokensChunk", func(t *testing.T, s credentialTestStore) error {
			*s.now = s.now.Add(24*time.Hour + TokenExpiredKeep + time.Second)
			_, n, err := s.pruneTokensChunk(s.now.Add(-TokenExpiredKeep), nil)
			if n != 1 {
				t.Errorf("pruned %d tokens, want alice's 1", n)
			}
			return err
		}},
	} {
		t.Run(tc.writer, func(t *testing.T) {
			s := newCredentialTestStore(t)
			warmToken(t, s.Store, s.bobToken)
			if _, err := s.AddDevice(Device{ID: "pump-1", Groups: []string{"ops"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Device("pump-1"); err != nil {
				t.Fatal(err)
			}
			tokenGen, deviceGen := s.tokens.generation(), s.devices.generation()
			if err := tc.op(t, s); err != nil {
				t.Fatal(err)
			}
			tokensDropped := s.tokens.len() == 0 && s.tokens.generation() != tokenGen
			devicesDropped := s.devices.len() == 0 && s.devices.generation() != deviceGen
			if !tokensDropped && !devicesDropped {
				t.Errorf("%s left the token and device caches as they were", tc.writer)
			}
		})
	}
}

// cacheExempt lists the functions of the package that write the users,
// tokens or devices bucket and need not drop the caches, each with the
// reason; every other such function must call usersChanged, tokensChanged
// or devicesChanged.
var cacheExempt = map[string]string{
	"CreateToken":        "a new token cannot be in the cache",
	"writeTokenUse":      "writes only the last use, which a cached credential does not carry",
	"deleteUserTokens":   "a helper run inside its callers' transactions; the callers are checked",
	"pruneSessionsChunk": "reads users, deletes sessions",
	"insertDevice":       "adds a device; a lookup of an id that has none is not cached",
	"writeLastSeen":      "writes only the last-seen time, which Device takes from the write-behind (it keeps written times)",
	"initSchema":         "creates the buckets before the store serves anything",
}

// A function that writes users, tokens or devices without dropping the
// caches would leave a revoked token, a demoted user or a device's old
// groups working for up to a minute. This finds every function that names
// one of those buckets (or calls a helper that writes them) and also
// writes, and requires it to drop the caches or to be exempt with a reason.
func TestEveryCachedRecordWriterDropsItsCache(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			var names, writes, drops bool
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.Ident:
					if n.Name == "bucketUsers" || n.Name == "bucketTokens" || n.Name == "bucketDevices" {
						names = true
					}
				case *ast.CallExpr:
					var callee string
					switch f := n.Fun.(type) {
					case *ast.SelectorExpr:
						callee = f.Sel.Name
					case *ast.Ident:
						callee = f.Name
					case *ast.IndexExpr: // a generic call with explicit types
						if id, ok := f.X.(*ast.Ident); ok {
							callee = id.Name
						}
					}
					switch callee {
					case "Put", "Delete", "rewriteRecord", "deleteUserRecords":
						writes = true
					case "deleteUserTokens":
						names, writes = true, true
					case "usersChanged", "tokensChanged", "devicesChanged":
						drops = true
					}
				}
				return true
			})
			if !names || !writes {
				continue
			}
			found = append(found, fn.Name.Name)
			if _, ok := cacheExempt[fn.Name.Name]; !drops && !ok {
				t.Errorf("%s (%s) writes users, tokens or devices but calls none of usersChanged, tokensChanged, devicesChanged: a revoked token or changed record would stay cached", fn.Name.Name, fset.Position(fn.Pos()))
			}
		}
	}
	for name := range cacheExempt {
		if !slices.Contains(found, name) {
			t.Errorf("cacheExempt lists %s, which no longer writes users, tokens or devices", name)
		}
	}
	sort.Strings(found)
	t.Logf("writers of users, tokens and devices: %v", found)
}

// The proxy looks the device up for every request; a cached record must
// follow every change of it at once.
func TestCachedDeviceFollowsChangesAtOnce(t *testing.T) {
	s := newCredentialTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-1", Groups: []string{"ops"}}); err != nil {
		t.Fatal(err)
	}
	c, err := s.AuthenticateToken(s.aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	allowed := func() bool {
		t.Helper()
		d, err := s.Device("pump-1")
		if err != nil {
			return false
		}
		return c.Allows(d)
	}
	if !allowed() || s.devices.len() != 1 {
		t.Fatalf("pump-1 in ops not allowed to alice, or not cached (%d entries)", s.devices.len())
	}
	if _, err := s.UpdateDevice("pump-1", DeviceUpdate{Groups: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if allowed() {
		t.Error("pump-1 moved out of ops is still allowed to alice")
	}
	if err := s.SetDeviceDisabled("pump-1", true); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device("pump-1"); err != nil || !d.Disabled {
		t.Errorf("disabled device read back as %+v, %v", d, err)
	}
	if err := s.RemoveDevice("pump-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Device("pump-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed device = %v, want ErrNotFound", err)
	}
	// The last-seen time is not in the cache's hands: a touch shows at once.
	if _, err := s.AddDevice(Device{ID: "pump-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Device("pump-1"); err != nil {
		t.Fatal(err)
	}
	seen := totpT0.Add(time.Hour)
	s.TouchDevice("pump-1", seen)
	if err := s.lastSeen.flush(); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device("pump-1"); err != nil || !d.LastSeen.Equal(seen) {
		t.Errorf("last seen after a touch = %v, %v; want %v", d.LastSeen, err, seen)
	}
}

func BenchmarkAuthenticateToken(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUser("alice", "alice-pw", RoleUser, nil); err != nil {
		b.Fatal(err)
	}
	tok, _, err := s.CreateToken(Token{User: "alice", Name: "laptop"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		cache bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.cache {
					s.tokens.invalidate()
				}
				if _, err := s.AuthenticateToken(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDevice(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AddDevice(Device{ID: "pump-1", Ports: []uint16{22, 80}}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		cache bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.cache {
					s.devices.invalidate()
				}
				if _, err := s.Device("pump-1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
