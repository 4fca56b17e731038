package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Host keys of the devices' SSH servers, for the browser's SSH terminal
// (internal/webssh), which trusts a device's key on first use: the first
// key a device's SSH server shows is kept, and a different one later is
// refused until an admin resets it (ResetHostKey). One key per device,
// under its id in bucket "hostkeys"; removing the device removes it.

// HostKey is the SSH host key kept for a device.
type HostKey struct {
	// Key is the public key in the SSH wire format (RFC 4253 §6.6), as
	// golang.org/x/crypto/ssh's PublicKey.Marshal gives it; the store does
	// not parse it.
	Key   []byte    `json:"key"`
	Added time.Time `json:"added"` // when it was first trusted
}

var bucketHostKeys = []byte("hostkeys")

// HostKey returns the host key kept for device; an error wrapping
// ErrNotFound when none is (never used, or reset).
func (s *Store) HostKey(device string) (HostKey, error) {
	if !validDeviceID(device) {
		return HostKey{}, fmt.Errorf("host key of %q: %w", truncate(device), ErrNotFound)
	}
	var k HostKey
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = getRecord[HostKey](tx, bucketHostKeys, device, "host key")
		return err
	})
	if err != nil {
		return HostKey{}, fmt.Errorf("host key of %q: %w", device, err)
	}
	return k, nil
}

// SetHostKey keeps key as device's host key if the device has none yet
// (trust on first use), and returns the device's host key either way: key
// itself, with first set, or the one kept before, which the caller
// compares with key. Two first sessions racing each other keep one key,
// and the other sees it. The device must exist (ErrNotFound).
func (s *Store) SetHostKey(device string, key []byte) (kept HostKey, first bool, err error) {
	if !validDeviceID(device) {
		return HostKey{}, false, fmt.Errorf("set host key of %q: %w", truncate(device), ErrNotFound)
	}
	if len(key) == 0 {
		return HostKey{}, false, fmt.Errorf("set host key of %q: empty key: %w", device, ErrInvalid)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getDevice(tx, device); err != nil {
			return err
		}
		k, err := getRecord[HostKey](tx, bucketHostKeys, device, "host key")
		if err == nil {
			kept = k
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		kept, first = HostKey{Key: key, Added: s.now().UTC()}, true
		data, err := json.Marshal(kept)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketHostKeys).Put([]byte(device), data)
	})
	if err != nil {
		return HostKey{}, false, fmt.Errorf("set host key of %q: %w", device, err)
	}
	return kept, first, nil
}

// ResetHostKey forgets device's host key, so that the next session trusts
// the key the device shows then. It reports whether there was one. The
// device must exist (ErrNotFound).
func (s *Store) ResetHostKey(device string) (had bool, err error) {
	if !validDeviceID(device) {
		return false, fmt.Errorf("reset host key of %q: %w", truncate(device), ErrNotFound)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getDevice(tx, device); err != nil {
			return err
		}
		b := tx.Bucket(bucketHostKeys)
		had = b.Get([]byte(device)) != nil
		return b.Delete([]byte(device))
	})
	if err != nil {
		return false, fmt.Errorf("reset host key of %q: %w", device, err)
	}
	return had, nil
}
