package store

import "errors"

// TOTP (RFC 6238, via github.com/pquerna/otp): SHA-1, 6 digits, 30 s steps.
// A user record holds the enabled secret, a pending secret between
// BeginTOTP and ConfirmTOTP, and the last accepted time step. Codes are
// accepted with one step of skew either way, and only for a step later
// than the last accepted one, so a code is never accepted twice — across
// restarts too, since the step is stored.

// errTODO marks API whose body is still being written.
var errTODO = errors.New("not implemented yet")

// BeginTOTP makes a new pending TOTP secret for the named user, replacing
// any earlier pending one, and returns its otpauth:// URL (issuer is the
// label authenticator apps show, e.g. "Reflector (reflector.example.com)").
// TOTP is not required until ConfirmTOTP succeeds. It fails with ErrExists
// if TOTP is already enabled.
func (s *Store) BeginTOTP(name, issuer string) (url string, err error) { return "", errTODO }

// ConfirmTOTP switches TOTP on for the named user if code is valid for the
// pending secret. A wrong code wraps ErrBadCredentials; no pending secret
// wraps ErrNotFound.
func (s *Store) ConfirmTOTP(name, code string) error { return errTODO }

// CheckTOTP checks a code against the named user's enabled secret and
// records its step. Wrong, replayed or too-skewed codes wrap
// ErrBadCredentials, as does a user without TOTP.
func (s *Store) CheckTOTP(name, code string) error { return errTODO }

// DisableTOTP switches TOTP off for the named user after checking code
// (as CheckTOTP). With force, no code is needed: an administrator resets a
// user who lost their authenticator.
func (s *Store) DisableTOTP(name, code string, force bool) error { return errTODO }
