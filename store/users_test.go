package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAddUserThenUserReturnsItWithoutHash(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a", "plant-b")
	before := time.Now()
	if err := s.AddUser("alice@example.com", "secret-1", RoleUser, []string{"plant-b", "plant-a", "plant-b"}); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	u, err := s.User("alice@example.com")
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if u.Name != "alice@example.com" || u.Role != RoleUser {
		t.Errorf("User = %+v", u)
	}
	if want := []string{"plant-a", "plant-b"}; !slices.Equal(u.Groups, want) {
		t.Errorf("Groups = %q, want %q (sorted, deduplicated)", u.Groups, want)
	}
	if u.Created.Before(before.Add(-time.Second)) || u.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about now", u.Created)
	}
}

func TestAddUserStoresArgon2idHash(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "secret-1", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	rec := rawUser(t, s, "alice")
	if _, err := parseArgon2id(rec.PasswordHash); err != nil {
		t.Errorf("stored hash %q: %v", rec.PasswordHash, err)
	}
}

func TestAddUserTwiceIsErrExistsEvenInOtherCase(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "Alice", "ALICE"} {
		if err := s.AddUser(name, "pw", RoleUser, nil); !errors.Is(err, ErrExists) {
			t.Errorf("AddUser(%q) = %v, want ErrExists", name, err)
		}
	}
	if _, err := s.User("Alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User(Alice) = %v, want ErrNotFound: names are case-sensitive", err)
	}
}

func TestUsersSortedByName(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"carol", "Bob", "alice", "dave"} {
		if err := s.AddUser(name, "pw", RoleUser, nil); err != nil {
			t.Fatal(err)
		}
	}
	users, err := s.Users()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if want := []string{"Bob", "alice", "carol", "dave"}; !slices.Equal(names, want) {
		t.Errorf("Users() names = %q, want %q", names, want)
	}
}

func TestUsersOfEmptyStoreIsEmpty(t *testing.T) {
	s := newTestStore(t)
	users, err := s.Users()
	if err != nil || len(users) != 0 {
		t.Errorf("Users() = %v, %v; want none", users, err)
	}
}

func TestRemoveUser(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser("alice"); err != nil {
		t.Fatalf("RemoveUser: %v", err)
	}
	if _, err := s.User("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User after remove = %v, want ErrNotFound", err)
	}
	if err := s.RemoveUser("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveUser = %v, want ErrNotFound", err)
	}
}

func TestSetPasswordOfUnknownUserIsNotFound(t *testing.T) {
	s := newTestStore(t)
	if err := s.SetPassword("nobody", "pw"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword = %v, want ErrNotFound", err)
	}
}

func TestSetPasswordRejectsEmptyPassword(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetPassword empty = %v, want ErrInvalid", err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
		t.Errorf("old password after rejected change: %v", err)
	}
}

func TestCheckPasswordAcceptsRightPassword(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	if err := s.AddUser("alice", "correct horse", RoleAdmin, []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.CheckPassword(context.Background(), "alice", "correct horse")
	if err != nil {
		t.Fatalf("CheckPassword: %v", err)
	}
	if u.Name != "alice" || u.Role != RoleAdmin || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Errorf("CheckPassword user = %+v", u)
	}
}

func TestCheckPasswordRejectsWrongAndUnknown(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "correct horse", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ desc, name, password string }{
		{"wrong password", "alice", "wrong horse"},
		{"password prefix", "alice", "correct"},
		{"empty password", "alice", ""},
		{"unknown user", "bob", "correct horse"},
		{"name in other case", "Alice", "correct horse"},
		{"invalid name", "alice bob", "correct horse"},
		{"empty name", "", "correct horse"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			u, err := s.CheckPassword(context.Background(), tc.name, tc.password)
			if !errors.Is(err, ErrBadCredentials) {
				t.Errorf("CheckPassword(%q, %q) = %+v, %v; want ErrBadCredentials", tc.name, tc.password, u, err)
			}
		})
	}
	if n := s.creds.len(); n != 0 {
		t.Errorf("credential cache holds %d entries after failures only, want 0", n)
	}
}

// An unknown user must cost an argon2id verification like a wrong password,
// or response times tell which names exist. The bound is loose (a quarter)
// so a busy machine does not fail it; skipping the hash is ~1000× faster.
func TestCheckPasswordUnknownUserCostsAsMuchAsWrongPassword(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "correct horse", RoleUser, nil); err != nil {
		t.Fatal(err)
	}

	fastest := func(name string) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 3 {
			start := time.Now()
			if _, err := s.CheckPassword(context.Background(), name, "wrong horse"); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("CheckPassword(%q) = %v", name, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	wrong := fastest("alice")
	unknown := fastest("nobody")
	if unknown < wrong/4 {
		t.Errorf("unknown user took %v, wrong password %v: unknown users skip the hash", unknown, wrong)
	}
}

func TestCheckPasswordServesRepeatsFromCache(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "correct horse", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	// Break the stored hash behind the store's back (no invalidation): a
	// repeat check succeeds only if it does not look at the record.
	putRawUser(t, s, "alice", func(r *userRecord) { r.PasswordHash = "$argon2id$garbage" })
	if _, err := s.CheckPassword(context.Background(), "alice", "correct horse"); err != nil {
		t.Errorf("repeat CheckPassword = %v, want a cache hit", err)
	}
	// The cache is keyed by the password too.
	if _, err := s.CheckPassword(context.Background(), "alice", "wrong horse"); err == nil {
		t.Error("wrong password accepted after a cached success")
	}
}

func TestCheckPasswordCacheDroppedOnPasswordChange(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "old password", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "old password"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword("alice", "new password"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "old password"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old password after change = %v, want ErrBadCredentials", err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "new password"); err != nil {
		t.Errorf("new password after change = %v", err)
	}
}

func TestCheckPasswordCacheDroppedOnUserWrites(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		write func(*Store) error
	}{
		{"add user", func(s *Store) error { return s.AddUser("bob", "pw", RoleUser, nil) }},
		{"remove user", func(s *Store) error { return s.RemoveUser("alice") }},
		{"set password", func(s *Store) error { return s.SetPassword("alice", "other") }},
		{"set role", func(s *Store) error { return s.SetUserRole("alice", RoleAdmin) }},
		{"set groups", func(s *Store) error {
			if err := s.AddGroup(Group{Name: "ops"}); err != nil {
				return err
			}
			return s.SetUserGroups("alice", []string{"ops"})
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTestStore(t)
			if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
				t.Fatal(err)
			}
			if n := s.creds.len(); n != 1 {
				t.Fatalf("cache holds %d entries after a success, want 1", n)
			}
			if err := tc.write(s); err != nil {
				t.Fatal(err)
			}
			if n := s.creds.len(); n != 0 {
				t.Errorf("cache holds %d entries after %s, want 0", n, tc.desc)
			}
		})
	}
}

func TestCheckPasswordOfRemovedUserFails(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("CheckPassword of removed user = %v, want ErrBadCredentials", err)
	}
}

func TestCheckPasswordCacheExpiresAfter60s(t *testing.T) {
	s := newTestStore(t)
	now := time.Now()
	s.creds.now = func() time.Time { return now }
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	key := newCredKey("alice", "pw")
	now = now.Add(59 * time.Second)
	if _, ok := s.creds.get(key); !ok {
		t.Error("entry gone after 59s, want cached for 60s")
	}
	now = now.Add(time.Second)
	if _, ok := s.creds.get(key); ok {
		t.Error("entry still cached after 60s")
	}
}

func TestCheckPasswordResultDoesNotAliasCache(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.CheckPassword(context.Background(), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	u.Groups[0] = "admins"
	u, err = s.CheckPassword(context.Background(), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.Groups, []string{"ops"}) {
		t.Errorf("cached Groups = %q after caller changed its copy, want [ops]", u.Groups)
	}
}

func TestAddUserToUnknownGroupIsNotFound(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"ops", "plant-a"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddUser with unknown group = %v, want ErrNotFound", err)
	}
	if _, err := s.User("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User after refused AddUser = %v, want ErrNotFound", err)
	}
}

func TestSetUserRole(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserRole("alice", RoleAdmin); err != nil {
		t.Fatalf("SetUserRole: %v", err)
	}
	// Through the credential cache too.
	if u, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil || u.Role != RoleAdmin {
		t.Errorf("CheckPassword after SetUserRole = %+v, %v; want admin", u, err)
	}
	if err := s.SetUserRole("alice", "root"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetUserRole(root) = %v, want ErrInvalid", err)
	}
	if err := s.SetUserRole("alice", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetUserRole(\"\") = %v, want ErrInvalid", err)
	}
	if u, _ := s.User("alice"); u.Role != RoleAdmin {
		t.Errorf("Role after refused changes = %q, want admin", u.Role)
	}
	if err := s.SetUserRole("nobody", RoleUser); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetUserRole of unknown user = %v, want ErrNotFound", err)
	}
}

func TestSetUserGroups(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops", "plant-a", "plant-b")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserGroups("alice", []string{"plant-b", "plant-a", "plant-b"}); err != nil {
		t.Fatalf("SetUserGroups: %v", err)
	}
	if u, _ := s.User("alice"); !slices.Equal(u.Groups, []string{"plant-a", "plant-b"}) {
		t.Errorf("Groups = %q, want [plant-a plant-b] (sorted, deduplicated)", u.Groups)
	}
	if u, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil || !slices.Equal(u.Groups, []string{"plant-a", "plant-b"}) {
		t.Errorf("CheckPassword after SetUserGroups = %+v, %v", u, err)
	}

	for _, tc := range []struct {
		desc   string
		groups []string
		want   error
	}{
		{"unknown group", []string{"plant-a", "plant-c"}, ErrNotFound},
		{"invalid group", []string{"a@b"}, ErrInvalid},
		{"empty group", []string{""}, ErrInvalid},
	} {
		if err := s.SetUserGroups("alice", tc.groups); !errors.Is(err, tc.want) {
			t.Errorf("%s: SetUserGroups(%q) = %v, want %v", tc.desc, tc.groups, err, tc.want)
		}
	}
	if u, _ := s.User("alice"); !slices.Equal(u.Groups, []string{"plant-a", "plant-b"}) {
		t.Errorf("Groups after refused changes = %q, want unchanged", u.Groups)
	}

	if err := s.SetUserGroups("alice", nil); err != nil {
		t.Fatalf("SetUserGroups(nil): %v", err)
	}
	if u, _ := s.User("alice"); len(u.Groups) != 0 {
		t.Errorf("Groups after SetUserGroups(nil) = %q, want none", u.Groups)
	}
	if err := s.SetUserGroups("nobody", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetUserGroups of unknown user = %v, want ErrNotFound", err)
	}
}

// A refused change writes nothing, so it keeps the cached passwords.
func TestRefusedUserChangeKeepsCredentialCache(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserGroups("alice", []string{"missing"}); err == nil {
		t.Fatal("SetUserGroups with unknown group succeeded")
	}
	if n := s.creds.len(); n != 1 {
		t.Errorf("cache holds %d entries after a refused change, want 1", n)
	}
}

func TestUserTOTPFlagFollowsEnabledSecret(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	putRawUser(t, s, "alice", func(r *userRecord) { r.TOTPPending = "JBSWY3DPEHPK3PXP" })
	if u, _ := s.User("alice"); u.TOTP {
		t.Error("User.TOTP true with only a pending secret")
	}
	putRawUser(t, s, "alice", func(r *userRecord) { r.TOTPSecret = "JBSWY3DPEHPK3PXP" })
	if u, _ := s.User("alice"); !u.TOTP {
		t.Error("User.TOTP false with an enabled secret")
	}
	if users, _ := s.Users(); len(users) != 1 || !users[0].TOTP {
		t.Errorf("Users() = %+v, want alice with TOTP", users)
	}
}

func rawUser(t *testing.T, s *Store, name string) userRecord {
	t.Helper()
	var rec userRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getUser(tx, name)
		return err
	})
	if err != nil {
		t.Fatalf("raw user %q: %v", name, err)
	}
	return rec
}

func putRawUser(t *testing.T, s *Store, name string, edit func(*userRecord)) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getUser(tx, name)
		if err != nil {
			return err
		}
		edit(&rec)
		data, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).Put([]byte(name), data)
	})
	if err != nil {
		t.Fatalf("put raw user %q: %v", name, err)
	}
}
