package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBackupIsAWorkingDatabaseWithPendingWritesIn(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "alice-pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-1"}); err != nil {
		t.Fatal(err)
	}
	seen := time.Now().Truncate(time.Second)
	s.TouchDevice("pump-1", seen)                          // batched in memory
	s.Audit(AuditEvent{Kind: AuditUserAdd, User: "alice"}) // queued

	path := filepath.Join(t.TempDir(), "backup.db")
	size, err := s.Backup(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v (want %d bytes, mode 0600)", fi, err, size)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".backup.db.*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	// Restored as a data directory's reflector.db, it is the store.
	dir := t.TempDir()
	if err := os.Rename(path, filepath.Join(dir, dbFileName)); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.CheckPassword(context.Background(), "alice", "alice-pw"); err != nil {
		t.Errorf("restored user: %v", err)
	}
	if d, err := r.Device("pump-1"); err != nil || !d.LastSeen.Equal(seen) {
		t.Errorf("restored device: %+v, %v; want last seen %v", d, err, seen)
	}
	events, err := r.AuditEvents(AuditFilter{Kind: AuditUserAdd})
	if err != nil || len(events) != 1 {
		t.Errorf("restored audit: %v, %v", events, err)
	}
}

func TestBackupNeverReplacesAFile(t *testing.T) {
	s := newTestStore(t)
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("backup over a file: %v, want os.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the file was changed: %q", b)
	}
	if _, err := s.Backup(filepath.Join(t.TempDir(), "no", "such", "dir", "b.db")); err == nil {
		t.Fatal("backup into a missing directory succeeded")
	}
}
