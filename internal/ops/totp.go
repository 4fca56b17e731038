package ops

import (
	"bytes"
	"image/png"

	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"

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
	// ErrMalformedCode: a code that is not six digits, which no
	// authenticator app shows; it is refused before the store is asked, so
	// it costs no attempt.
	ErrMalformedCode = errors.New("want the 6 digits the authenticator app shows")
)

// NormalizeCode drops the spaces apps show in the middle of a code
// ("123 456") and checks that six digits remain. ConfirmTOTP and
// DisableTOTP call it, so every front takes a code typed as the app shows
// it.
func NormalizeCode(s string) (string, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if len(s) != 6 || strings.Trim(s, "0123456789") != "" {
		return "", false
	}
	return s, true
}

// normalizeCode is NormalizeCode with its failure as an error for the
// input "code", wrapping store.ErrInvalid and ErrMalformedCode.
func normalizeCode(what, code string) (string, error) {
	norm, ok := NormalizeCode(code)
	if !ok {
		return "", &store.FieldError{Field: "code", Err: fmt.Errorf("%s: %w: %w", what, store.ErrInvalid, ErrMalformedCode)}
	}
	return norm, nil
}

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

// ConfirmTOTP switches TOTP on with the first code from the app, spaces
// allowed ("123 456"). A code that is not six digits wraps
// ErrMalformedCode; a wrong one, store.ErrBadCredentials; none pending,
// ErrNoEnrolment (or ErrTOTPEnabled when it is on already).
func (s *Service) ConfirmTOTP(ctx context.Context, c Caller, name, code string) error {
	what := "enable TOTP for " + name
	if err := c.requireSelfOrAdmin(what, name); err != nil {
		return err
	}
	code, err := normalizeCode(what, code)
	if err != nil {
		return err
	}
	err = s.cfg.Store.ConfirmTOTP(name, code)
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

// DisableTOTP turns TOTP off for a user with a current code (spaces
// allowed, as for ConfirmTOTP), or without one (force) for a user who lost
// their authenticator; force also cancels a pending enrolment, and is for
// admins only. It reports whether what it cancelled was only a pending
// enrolment.
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
	if !force {
		if code, err = normalizeCode(what, code); err != nil {
			return false, err
		}
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

// qrSize is the QR code image's width and height in pixels.
const qrSize = 256

// QRCodePNG draws an otpauth:// URL (BeginTOTP's) as a QR code, a PNG
// image, for the fronts that show one (the REST API, the web UI); the
// admin command draws its own in text.
func QRCodePNG(otpURL string) ([]byte, error) {
	code, err := qr.Encode(otpURL, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("encode QR code: %w", err)
	}
	scaled, err := barcode.Scale(code, qrSize, qrSize)
	if err != nil {
		return nil, fmt.Errorf("scale QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, scaled); err != nil {
		return nil, fmt.Errorf("encode QR code as PNG: %w", err)
	}
	return buf.Bytes(), nil
}
