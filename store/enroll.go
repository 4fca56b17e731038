package store

import "time"

// Enrolment keys let agents register themselves: `reflector enroll create`
// makes a key for a group, an agent started with it and a device id calls
// Enroll and receives its own secret. Keys have the same shape as tokens
// with EnrollKeyPrefix: a public 8-byte id and a 128-bit secret, hashed.

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

// CreateEnrollKey makes a key from k.Group (which must exist), k.Max and
// k.Expires, and returns the key string (shown once) and its record.
func (s *Store) CreateEnrollKey(k EnrollKey) (key string, rec EnrollKey, err error) {
	return "", EnrollKey{}, errTODO
}

// EnrollKeys returns all enrolment keys sorted by creation time.
func (s *Store) EnrollKeys() ([]EnrollKey, error) { return nil, errTODO }

// RevokeEnrollKey deletes an enrolment key by id.
func (s *Store) RevokeEnrollKey(id string) error { return errTODO }

// Enroll registers device deviceID with an enrolment key, in one
// transaction: the key must match (ErrBadCredentials), not be expired
// (ErrExpired) nor used up (ErrQuota); the device id must be valid
// (ErrInvalid) and free (ErrExists); the key's group must have room
// (ErrQuota). It returns the new device and its secret, and counts the use.
func (s *Store) Enroll(key, deviceID string) (Device, string, error) { return Device{}, "", errTODO }
