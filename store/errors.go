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

// FieldError is a failed check of one input of a store call: Field names
// the input as the REST API spells it ("name", "groups", "maxDevices"), so
// a 400 answer can point at it. Err wraps one sentinel: ErrInvalid for a
// malformed value, ErrNotFound for a group named that does not exist,
// ErrQuota for a group that is full, ErrBadCredentials for a wrong TOTP
// code. Store methods wrap it with their step as for any error, so
// errors.Is finds the sentinel and errors.As the *FieldError.
type FieldError struct {
	Field string
	Err   error
}

// Error is Err's text alone: the field is for programs, and messages stay
// what they were before fields were named (the CLI's tests compare them).
func (e *FieldError) Error() string { return e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr returns err as a *FieldError for field, or nil for a nil err.
func fieldErr(field string, err error) error {
	if err == nil {
		return nil
	}
	return &FieldError{Field: field, Err: err}
}
