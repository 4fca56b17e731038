package store

import (
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// DeviceSecretAdopted reports whether device id has an adopted secret
// (AddDeviceWithSecret, ImportDevices), which a person may have chosen and
// so may be guessed, rather than one the store generated (256 random bits).
// The login checks lock out guesses at the first kind only (issue 15). An
// unknown id is not adopted: it is checked against the cheap dummy, and
// there is nothing to guess.
func (s *Store) DeviceSecretAdopted(id string) (bool, error) {
	if !validDeviceID(id) {
		return false, nil
	}
	var adopted bool
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := getDevice(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		adopted = strings.HasPrefix(rec.SecretHash, argonPrefix)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("device %q secret kind: %w", id, err)
	}
	return adopted, nil
}
