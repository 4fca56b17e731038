package store

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	bolt "go.etcd.io/bbolt"
)

// TOTP (RFC 6238, via github.com/pquerna/otp): SHA-1, 6 digits, 30 s steps.
// A user record holds the enabled secret, a pending secret between
// BeginTOTP and ConfirmTOTP, and the last accepted time step. Codes are
// accepted with one step of skew either way, and only for a step later
// than the last accepted one, so a code is never accepted twice — across
// restarts too, since the step is stored.

const (
	totpPeriod = 30 // seconds per step
	totpDigits = 6
	totpSkew   = 1 // steps accepted either side of now (RFC 6238 §5.2)

	// defaultTOTPIssuer labels the account in authenticator apps when the
	// caller gives no issuer; otp.Generate requires one.
	defaultTOTPIssuer = "Reflector"
)

var totpOpts = totp.ValidateOpts{
	Period:    totpPeriod,
	Digits:    otp.DigitsSix,
	Algorithm: otp.AlgorithmSHA1,
}

// BeginTOTP makes a new pending TOTP secret for the named user, replacing
// any earlier pending one, and returns its otpauth:// URL (issuer is the
// label authenticator apps show, e.g. "Reflector (reflector.example.com)";
// "" for "Reflector"). TOTP is not required until ConfirmTOTP succeeds. It
// fails with ErrExists if TOTP is already enabled.
func (s *Store) BeginTOTP(name, issuer string) (url string, err error) {
	if checkUserName(name) != nil {
		return "", fmt.Errorf("begin TOTP for %q: %w", truncate(name), ErrNotFound)
	}
	if issuer == "" {
		issuer = defaultTOTPIssuer
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: name,
		Period:      totpOpts.Period,
		Digits:      totpOpts.Digits,
		Algorithm:   totpOpts.Algorithm,
	})
	if err != nil {
		return "", fmt.Errorf("begin TOTP for %q: %w", name, err)
	}
	err = s.updateUser(name, func(rec *userRecord) error {
		if rec.TOTPSecret != "" {
			return fmt.Errorf("TOTP %w", ErrExists)
		}
		rec.TOTPPending = key.Secret()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("begin TOTP for %q: %w", name, err)
	}
	return key.URL(), nil
}

// ConfirmTOTP switches TOTP on for the named user if code is valid for the
// pending secret, and ends their web sessions: those were opened with the
// password alone, which is no longer enough. A wrong code wraps
// ErrBadCredentials; no pending secret wraps ErrNotFound.
func (s *Store) ConfirmTOTP(name, code string) error {
	now := s.now()
	var sessions []string
	err := s.updateUserTx(name, func(tx *bolt.Tx, rec *userRecord) error {
		if rec.TOTPPending == "" {
			return fmt.Errorf("pending TOTP secret %w", ErrNotFound)
		}
		step, err := matchTOTP(rec.TOTPPending, code, now, rec.TOTPLastStep)
		if err != nil {
			return err
		}
		rec.TOTPSecret, rec.TOTPPending, rec.TOTPLastStep = rec.TOTPPending, "", step
		sessions, err = deleteUserSessions(tx, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("confirm TOTP for %q: %w", truncate(name), err)
	}
	s.sessionUse.forget(sessions...)
	return nil
}

// CheckTOTP checks a code against the named user's enabled secret and
// records its step. Wrong, replayed or too-skewed codes wrap
// ErrBadCredentials, as do a user without TOTP and an unknown user.
func (s *Store) CheckTOTP(name, code string) error {
	now := s.now()
	err := s.updateUser(name, func(rec *userRecord) error {
		return checkTOTP(rec, code, now)
	})
	if errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("no such user: %w", ErrBadCredentials)
	}
	if err != nil {
		return fmt.Errorf("check TOTP for %q: %w", truncate(name), err)
	}
	return nil
}

// DisableTOTP switches TOTP off for the named user after checking code
// (as CheckTOTP), and drops a pending secret. With force, no code is
// needed: an administrator resets a user who lost their authenticator;
// forcing it off for a user with neither an enabled nor a pending secret
// wraps ErrNotFound.
func (s *Store) DisableTOTP(name, code string, force bool) error {
	now := s.now()
	err := s.updateUser(name, func(rec *userRecord) error {
		if force {
			if rec.TOTPSecret == "" && rec.TOTPPending == "" {
				return fmt.Errorf("TOTP %w", ErrNotFound)
			}
		} else if err := checkTOTP(rec, code, now); err != nil {
			return err
		}
		rec.TOTPSecret, rec.TOTPPending = "", ""
		return nil
	})
	if err != nil {
		return fmt.Errorf("disable TOTP for %q: %w", truncate(name), err)
	}
	return nil
}

// checkTOTP checks code against rec's enabled secret at now and records its
// step in rec.
func checkTOTP(rec *userRecord, code string, now time.Time) error {
	if rec.TOTPSecret == "" {
		return fmt.Errorf("TOTP not enabled: %w", ErrBadCredentials)
	}
	step, err := matchTOTP(rec.TOTPSecret, code, now, rec.TOTPLastStep)
	if err != nil {
		return err
	}
	rec.TOTPLastStep = step
	return nil
}

// matchTOTP returns the time step within totpSkew of now whose code for
// secret is code, if that step is after last. ValidateCustom cannot be
// used: it does not say which step matched, and the step is what stops a
// replay. All candidate codes are computed and compared in constant time.
func matchTOTP(secret, code string, now time.Time, last int64) (int64, error) {
	if !isDigits(code, totpDigits) {
		return 0, fieldErr("code", fmt.Errorf("malformed TOTP code: %w", ErrBadCredentials))
	}
	current := now.Unix() / totpPeriod
	var matched, fresh int64 = -1, -1
	for step := current - totpSkew; step <= current+totpSkew; step++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOpts)
		if err != nil {
			// The secret is not quoted: it is a credential.
			return 0, fmt.Errorf("stored TOTP secret: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			matched = step
			if step > last {
				fresh = step
			}
		}
	}
	switch {
	case fresh >= 0:
		return fresh, nil
	case matched >= 0:
		return 0, fieldErr("code", fmt.Errorf("TOTP code already used: %w", ErrBadCredentials))
	default:
		return 0, fieldErr("code", fmt.Errorf("wrong TOTP code: %w", ErrBadCredentials))
	}
}

// isDigits reports whether s is n ASCII digits.
func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
