package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// newTestStore opens a store in a fresh directory and closes it when the
// test ends. Last-seen times are flushed every hour, i.e. only on Close,
// unless a test asks otherwise.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := open(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// manualClock is a Store's clock that moves only when told.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setClock makes s's clock a manualClock at t. Call it before s is used
// from other goroutines.
func setClock(s *Store, t time.Time) *manualClock {
	c := &manualClock{t: t}
	s.now = c.now
	return c
}

// addGroups creates groups without a device quota; users and devices may
// only join groups that exist.
func addGroups(t *testing.T, s *Store, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := s.AddGroup(Group{Name: name}); err != nil {
			t.Fatalf("AddGroup %q: %v", name, err)
		}
	}
}

func TestOpenCreatesPrivateDirectoryAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "reflector.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The umask can only narrow the mode; nothing may be open to group
		// or others.
		if got := fi.Mode().Perm(); got&^want != 0 {
			t.Errorf("%s: mode %v, want at most %v", path, got, want)
		}
	}
}

func TestOpenTwiceFailsWithin2sWithInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	defer s.Close()

	// bbolt's flock is per open file description, so a second Open in the
	// same process contends like a second reflector would.
	start := time.Now()
	s2, err := Open(dir)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded, want ErrInUse")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("second Open: %v, want an error wrapping ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "data directory in use by another reflector") {
		t.Errorf("second Open: message %q does not say the directory is in use", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("second Open took %v, want under 3s", elapsed)
	}
}

func TestOpenAfterCloseSucceeds(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestCloseTwiceReturnsFirstResult(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestReopenKeepsUsersAndDevices(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	addGroups(t, s, "plant-a", "plant-b")
	if err := s.AddUser("alice", "pw-alice", RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("bob", "pw-bob", RoleUser, []string{"plant-b", "plant-a"}); err != nil {
		t.Fatal(err)
	}
	secret, err := s.AddDevice(Device{ID: "pump-17", Name: "Pump 17", Groups: []string{"plant-a"}, Ports: []uint16{22, 80}, HTTPPort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	wantBob, _ := s.User("bob")
	wantPump, _ := s.Device("pump-17")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	users, err := s.Users()
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "alice" || users[1].Name != "bob" {
		t.Fatalf("Users() after reopen = %+v, want alice and bob", users)
	}
	assertUserEqual(t, users[1], wantBob)
	if _, err := s.CheckPassword(context.Background(), "bob", "pw-bob"); err != nil {
		t.Errorf("CheckPassword after reopen: %v", err)
	}
	pump, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret)
	if err != nil {
		t.Fatalf("CheckDeviceSecret after reopen: %v", err)
	}
	assertDeviceEqual(t, pump, wantPump)
}

func TestOpenRejectsOtherSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, "reflector.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte("2"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err == nil {
		s.Close()
		t.Fatal("Open of a schema 2 database succeeded")
	}
	if !strings.Contains(err.Error(), "schema version") {
		t.Errorf("Open: %v, want a schema version error", err)
	}
}

func TestNewDatabaseRecordsSchemaVersion1(t *testing.T) {
	s := newTestStore(t)
	var v string
	err := s.db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v != "1" {
		t.Errorf("meta/schema = %q, want 1", v)
	}
}

func assertUserEqual(t *testing.T, got, want User) {
	t.Helper()
	if got.Name != want.Name || got.Role != want.Role || !slices.Equal(got.Groups, want.Groups) || !got.Created.Equal(want.Created) {
		t.Errorf("user = %+v, want %+v", got, want)
	}
}

func assertDeviceEqual(t *testing.T, got, want Device) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || !slices.Equal(got.Groups, want.Groups) ||
		!slices.Equal(got.Ports, want.Ports) || got.HTTPPort != want.HTTPPort ||
		!got.Created.Equal(want.Created) || !got.LastSeen.Equal(want.LastSeen) || got.Disabled != want.Disabled {
		t.Errorf("device = %+v, want %+v", got, want)
	}
}
