package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// Tokens lists API tokens: a user's own; an admin's, those of user (all
// for "").
func (s *Service) Tokens(ctx context.Context, c Caller, user string) ([]store.Token, error) {
	if !c.Admin() {
		if user != "" && !c.self(user) {
			return nil, fmt.Errorf("list the tokens of %s: %w: only your own", user, ErrForbidden)
		}
		user = c.User.Name
	}
	return s.cfg.Store.Tokens(user)
}

// NewToken is an API token to make.
type NewToken struct {
	// User the token acts as; "" is the caller. Only an admin makes tokens
	// for others.
	User string
	Name string
	// Devices is a device-id pattern (path.Match) narrowing what the token
	// reaches; "" for every device the user may reach.
	Devices string
	// Expires; zero for never.
	Expires time.Time
}

// CreateToken makes an API token, the user's proxy password and API
// bearer; the secret is returned once. A token made with a token limited to
// some devices is limited to the same ones (it cannot widen its own reach).
func (s *Service) CreateToken(ctx context.Context, c Caller, n NewToken) (secret string, rec store.Token, err error) {
	if n.User == "" {
		if c.Local {
			// The control socket's stand-in is no user to make a token
			// for; a real user may be named "local", so only "" is refused.
			return "", store.Token{}, &store.FieldError{Field: "user", Err: fmt.Errorf("create token: %w: no user given", store.ErrInvalid)}
		}
		n.User = c.User.Name
	}
	if err := c.requireSelfOrAdmin("create a token for "+n.User, n.User); err != nil {
		return "", store.Token{}, err
	}
	if c.Devices != "" && n.Devices != c.Devices {
		if n.Devices != "" {
			return "", store.Token{}, &store.FieldError{Field: "devices",
				Err: fmt.Errorf("create token: %w: a token limited to devices %s makes tokens for the same devices only", store.ErrInvalid, c.Devices)}
		}
		n.Devices = c.Devices
	}
	secret, rec, err = s.cfg.Store.CreateToken(store.Token{User: n.User, Name: n.Name, Devices: n.Devices, Expires: n.Expires})
	if err != nil {
		return "", store.Token{}, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditTokenCreate, User: rec.User, Token: rec.ID,
		Reason: "name " + rec.Name + ", " + DescribeToken(rec)})
	return secret, rec, nil
}

// DescribeToken describes a token's limits: "expires 2025-04-03 12:00,
// devices pump-*", for messages and the audit log.
func DescribeToken(t store.Token) string {
	desc := "expires " + DateTime(t.Expires)
	if t.Expires.IsZero() {
		desc = "no expiry"
	}
	if t.Devices != "" {
		desc += ", devices " + t.Devices
	}
	return desc
}

// DateTime formats a stored time for messages, in local time; zero is
// "never".
func DateTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// RevokeToken revokes an API token (its user or an admin); streams opened
// with it are closed by the server's re-check.
func (s *Service) RevokeToken(ctx context.Context, c Caller, id string) (store.Token, error) {
	if !c.Admin() {
		// Look first: a user may revoke only their own, and learns nothing
		// of others' ids.
		own, err := s.cfg.Store.Tokens(c.User.Name)
		if err != nil {
			return store.Token{}, err
		}
		if !containsToken(own, id) {
			return store.Token{}, notFound("token", id)
		}
	}
	rec, err := s.cfg.Store.RevokeToken(id)
	if err != nil {
		return store.Token{}, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditTokenRevoke, User: rec.User, Token: rec.ID, Reason: "name " + rec.Name})
	s.accessChanged()
	return rec, nil
}

func containsToken(ts []store.Token, id string) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// notFound is store.ErrNotFound for a record of a kind.
func notFound(kind, name string) error {
	return fmt.Errorf("%s %q: %w", kind, name, store.ErrNotFound)
}
