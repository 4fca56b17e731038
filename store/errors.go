package store

import "errors"

// Sentinel errors. Every error a Store method returns wraps at most one of
// these together with the operation and record it concerns, so callers test
// with errors.Is and map them to answers (404, 409, 400, 401/407, exit at
// start-up) without reading message text.
var (
	// ErrNotFound: the user or device does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a user or device with that name or id already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid: a name, role, group, port or password fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrBadCredentials: the name/secret pair does not match. It is returned
	// for unknown names too, so callers cannot tell which part was wrong.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrInUse: another process (or another Store in this one) holds the
	// lock on the database file.
	ErrInUse = errors.New("data directory in use by another reflector")
	// ErrExpired: a token or enrolment key is past its expiry time.
	ErrExpired = errors.New("expired")
	// ErrQuota: a group's device quota or an enrolment key's use count is
	// exhausted.
	ErrQuota = errors.New("quota exhausted")
	// ErrDisabled: the device is disabled; its agent is refused.
	ErrDisabled = errors.New("disabled")
	// ErrNotEmpty: a group still has users, devices or enrolment keys.
	ErrNotEmpty = errors.New("still in use")
)
