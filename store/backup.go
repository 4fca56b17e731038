package store

import (
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the database to path, which must not
// exist yet, while the store stays in use. Batched writes (last-seen times,
// token and session use, queued audit events) are written first, so the
// copy is as current as the moment it starts. The copy is written beside
// path and linked into place only when it is complete and synced: a failed
// or interrupted backup never leaves a partial file under path. The file
// is a reflector.db: to restore, stop the reflector and put it in a data
// directory under that name.
func (s *Store) Backup(path string) (size int64, err error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("backup %s: %w", path, os.ErrExist)
	}
	// writeLoop is the one writer of batches: ask it.
	reply := make(chan error, 1)
	select {
	case s.flushNow <- reply:
		if err := <-reply; err != nil {
			return 0, fmt.Errorf("backup: write pending records: %w", err)
		}
	case <-s.done:
		return 0, fmt.Errorf("backup: %w", bolt.ErrDatabaseNotOpen)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the link, only the temporary name goes
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("backup: %w", err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		size, err = tx.WriteTo(tmp)
		return err
	})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("backup: write %s: %w", tmp.Name(), err)
	}
	// Link, unlike rename, refuses to replace a file that appeared since.
	if err := os.Link(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	return size, nil
}
