package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Ping reports whether the database answers: it runs a read transaction
// and looks for the meta bucket. The readiness check (/readyz) calls it on
// every probe, so it takes no write lock and touches no page beyond the
// root. After Close it fails with bbolt's ErrDatabaseNotOpen wrapped.
//
// The error names no path: its text goes to unauthenticated probes.
func (s *Store) Ping() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("meta bucket missing")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ping store: read transaction: %w", err)
	}
	return nil
}
