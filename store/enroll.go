package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Enrolment keys let agents register themselves: `reflector enroll create`
// makes a key for a group, an agent started with it and a device id calls
// Enroll and receives its own secret. Keys have the same shape as tokens
// with EnrollKeyPrefix: a public 8-byte id and a 128-bit secret, hashed.
//
// A key is EnrollKeyPrefix followed by unpadded base64url of 24 random
// bytes, 36 characters in all:
//
//	rfe_ <base64url( id [8 bytes] | secret [16 bytes] )>
//
// The record, a JSON value in the enroll bucket under the id as 16 hex
// digits, holds hashSecret of the 16 secret bytes; the key itself is never
// stored.

// EnrollKeyPrefix starts every enrolment key.
const EnrollKeyPrefix = "rfe_"

// EnrollKey is an enrolment key's record; the secret is not in it.
type EnrollKey struct {
	ID      string // 16 hex digits, public
	Group   string // devices enrolled with the key join this group
	Max     int    // how many devices may enrol with it; 0 for no limit
	Uses    int    // devices enrolled so far
	Created time.Time
	Expires time.Time // zero: never
}

// enrollRecord is the stored form of an enrolment key.
type enrollRecord struct {
	ID         string    `json:"id"`
	Group      string    `json:"group"`
	Max        int       `json:"max,omitempty"`
	Uses       int       `json:"uses,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires,omitzero"`
	SecretHash string    `json:"secret_hash"`
}

func (r *enrollRecord) key() EnrollKey {
	return EnrollKey{ID: r.ID, Group: r.Group, Max: r.Max, Uses: r.Uses, Created: r.Created, Expires: r.Expires}
}

// CreateEnrollKey makes a key from k.Group (which must exist), k.Max and
// k.Expires, and returns the key string (shown once) and its record. A
// negative Max, or an Expires that is not in the future, is ErrInvalid.
func (s *Store) CreateEnrollKey(k EnrollKey) (key string, rec EnrollKey, err error) {
	if err := checkGroupName(k.Group); err != nil {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", truncate(k.Group), fieldErr("group", err))
	}
	if k.Max < 0 {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", k.Group,
			fieldErr("max", fmt.Errorf("maximum uses %d %w: want 0 (no limit) or more", k.Max, ErrInvalid)))
	}
	now := s.now().UTC()
	if !k.Expires.IsZero() && !k.Expires.After(now) {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", k.Group,
			fieldErr("expires", fmt.Errorf("expiry %v %w: not in the future", k.Expires, ErrInvalid)))
	}
	key, id, secret, err := newRandomKey(EnrollKeyPrefix)
	if err != nil {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", k.Group, err)
	}
	r := enrollRecord{
		ID:         id,
		Group:      k.Group,
		Max:        k.Max,
		Created:    now,
		SecretHash: hashSecret(secret),
	}
	if !k.Expires.IsZero() {
		r.Expires = k.Expires.UTC()
	}
	data, err := json.Marshal(&r)
	if err != nil {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", k.Group, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := checkGroupsExist(tx, "group", []string{k.Group}); err != nil {
			return err
		}
		b := tx.Bucket(bucketEnroll)
		if b.Get([]byte(id)) != nil {
			// 64 random bits: this does not happen, but if it did,
			// overwriting would hand out someone else's key.
			return fmt.Errorf("key id %s %w", id, ErrExists)
		}
		return b.Put([]byte(id), data)
	})
	if err != nil {
		return "", EnrollKey{}, fmt.Errorf("create enrolment key for group %q: %w", k.Group, err)
	}
	return key, r.key(), nil
}

// EnrollKeys returns all enrolment keys sorted by creation time.
func (s *Store) EnrollKeys() ([]EnrollKey, error) {
	var keys []EnrollKey
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnroll).ForEach(func(k, v []byte) error {
			var rec enrollRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode enrolment key %s: %w", k, err)
			}
			keys = append(keys, rec.key())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list enrolment keys: %w", err)
	}
	// Ids are random, so ties (keys made within a clock tick) are broken
	// by id only to keep the order stable between calls.
	slices.SortFunc(keys, func(a, b EnrollKey) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return keys, nil
}

// RevokeEnrollKey deletes an enrolment key by id. Devices already enrolled
// with it keep their own secrets.
func (s *Store) RevokeEnrollKey(id string) error {
	if !validKeyID(id) {
		return fmt.Errorf("revoke enrolment key %q: %w", truncate(id), ErrNotFound)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnroll)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("revoke enrolment key %s: %w", id, err)
	}
	return nil
}

// Enroll registers device deviceID with an enrolment key, in one
// transaction: the key must match (ErrBadCredentials), not be expired
// (ErrExpired) nor used up (ErrQuota); the device id must be valid
// (ErrInvalid) and free (ErrExists); the key's group must have room
// (ErrQuota). It returns the new device and its secret, and counts the use.
//
// The key is checked before anything about the device, so a caller without
// a valid key learns nothing about which device ids are taken. A key of the
// wrong shape fails at once (the shape is public); a well-formed key with
// an unknown id costs the same hash and comparison as a wrong secret.
func (s *Store) Enroll(key, deviceID string) (Device, string, error) {
	id, secret, ok := parseRandomKey(EnrollKeyPrefix, key)
	if !ok {
		return Device{}, "", fmt.Errorf("enroll device %q: %w", truncate(deviceID), ErrBadCredentials)
	}
	var (
		rec    deviceRecord
		devSec string
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		// Read the clock once the write lock is held: a wait for it must
		// not let a key be used past its expiry.
		now := s.now()
		b := tx.Bucket(bucketEnroll)
		k, err := getEnrollKey(tx, id)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		stored := k.SecretHash
		if !found {
			stored = dummySecretHash
		}
		match, err := verifySecret(stored, secret)
		if err != nil {
			return err
		}
		if !found || !match {
			return ErrBadCredentials
		}
		if !k.Expires.IsZero() && !now.Before(k.Expires) {
			return fmt.Errorf("%w at %v", ErrExpired, k.Expires)
		}
		if k.Max > 0 && k.Uses >= k.Max {
			return fmt.Errorf("%w: used %d of %d times", ErrQuota, k.Uses, k.Max)
		}
		// The device record is made here, not before the transaction, so
		// an invalid device id is reported only to the holder of a key.
		rec, devSec, err = s.newDeviceRecord(Device{ID: deviceID, Groups: []string{k.Group}})
		if err != nil {
			return err
		}
		if err := insertDevice(tx, &rec); err != nil {
			return err
		}
		k.Uses++
		data, err := json.Marshal(&k)
		if err != nil {
			return fmt.Errorf("encode enrolment key record: %w", err)
		}
		return b.Put([]byte(id), data)
	})
	if err != nil {
		return Device{}, "", fmt.Errorf("enroll device %q with key %s: %w", truncate(deviceID), id, err)
	}
	s.lastSeen.forget(deviceID)
	return rec.device(), devSec, nil
}

// getEnrollKey reads and decodes an enrolment key record inside tx. It
// returns ErrNotFound itself (unwrapped) when there is no such key.
func getEnrollKey(tx *bolt.Tx, id string) (enrollRecord, error) {
	return getRecord[enrollRecord](tx, bucketEnroll, id, "enrolment key")
}

// countEnrollKeys returns how many enrolment keys name group.
func countEnrollKeys(tx *bolt.Tx, group string) (int, error) {
	n := 0
	err := tx.Bucket(bucketEnroll).ForEach(func(k, v []byte) error {
		var rec struct {
			Group string `json:"group"`
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode enrolment key %s: %w", k, err)
		}
		if rec.Group == group {
			n++
		}
		return nil
	})
	return n, err
}
