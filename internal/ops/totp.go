package ops

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/reflector-dev/reflector/store"
)

// TOTP errors, beside the store's.
var (
	// ErrTOTPEnabled: enrolment asked for a user who has TOTP already.
	ErrTOTPEnabled = errors.New("TOTP is already enabled; disable it first to enrol a new authenticator")
	// ErrTOTPNotEnabled: disabling asked for a user without TOTP.
	ErrTOTPNotEnabled = errors.New("TOTP is not enabled")
	// ErrNoEnrolment: a code to confirm, and no enrolment pending.
	ErrNoEnrolment = errors.New("no TOTP enrolment pending")
)

// issuer names the reflector in authenticator apps.
func (s *Service) issuer() string {
	if u, err := url.Parse(s.cfg.ReflectorURL); err == nil && u.Hostname() != "" {
		return "Reflector (" + u.Hostname() + ")"
	}
	return "Reflector"
}

// BeginTOTP starts TOTP enrolment for a user (themselves, or any user for an
// admin) and returns the otpauth:// URL for the authenticator app. TOTP is
// on only once ConfirmTOTP gets a first code.
func (s *Service) BeginTOTP(ctx context.Context, c Caller, name string) (otpURL string, err error) {
	if err := c.requireSelfOrAdmin("enable TOTP for "+name, name); err != nil {
		return "", err
	}
	otpURL, err = s.cfg.Store.BeginTOTP(name, s.issuer())
	if errors.Is(err, store.ErrExists) {
		return "", fmt.Errorf("enable TOTP for %s: %w", name, ErrTOTPEnabled)
	}
	if err != nil {
		return "", err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditTOTP, User: name, Reason: "enrolment started"})
	return otpURL, nil
}

// ConfirmTOTP switches TOTP on with the first code from the app. A wrong
// code wraps store.ErrBadCredentials; none pending, ErrNoEnrolment (or
// ErrTOTPEnabled when it is on already).
func (s *Service) ConfirmTOTP(ctx context.Context, c Caller, name, code string) error {
	what := "enable TOTP for " + name
	if err := c.requireSelfOrAdmin(what, name); err != nil {
		return err
	}
	err := s.cfg.Store.ConfirmTOTP(name, code)
	if errors.Is(err, store.ErrNotFound) {
		// No such user, or nothing pending: say which.
		u, uerr := s.cfg.Store.User(name)
		switch {
		case uerr != nil:
			return uerr
		case u.TOTP:
			return fmt.Errorf("%s: %w", what, ErrTOTPEnabled)
		}
		return fmt.Errorf("%s: %w", what, ErrNoEnrolment)
	}
	if err != nil {
		return err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditTOTP, User: name, Reason: "enabled"})
	// The password alone no longer opens proxy streams.
	s.accessChanged()
	return nil
}

// DisableTOTP turns TOTP off for a user with a current code, or without
// one (force) for a user who lost their authenticator; force also cancels
// a pending enrolment, and is for admins only. It reports whether what it
// cancelled was only a pending enrolment.
func (s *Service) DisableTOTP(ctx context.Context, c Caller, name, code string, force bool) (pendingOnly bool, err error) {
	what := "disable TOTP for " + name
	if force {
		err = c.requireAdmin(what + " without a code")
	} else {
		err = c.requireSelfOrAdmin(what, name)
	}
	if err != nil {
		return false, err
	}
	u, err := s.cfg.Store.User(name)
	if err != nil {
		return false, err
	}
	if !u.TOTP && !force {
		return false, fmt.Errorf("%s: %w", what, ErrTOTPNotEnabled)
	}
	err = s.cfg.Store.DisableTOTP(name, code, force)
	switch {
	case errors.Is(err, store.ErrNotFound) && force:
		return false, fmt.Errorf("%s: %w", what, ErrTOTPNotEnabled)
	case err != nil:
		return false, err
	}
	if !u.TOTP {
		s.audit(c, store.AuditEvent{Kind: store.AuditTOTP, User: name, Reason: "pending enrolment cancelled"})
		return true, nil
	}
	reason := "disabled"
	if force {
		reason = "disabled by force"
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditTOTP, User: name, Reason: reason})
	return false, nil
}
