package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/reflector-dev/reflector/store"
)

// The web login (admin package) checks a password, then, for a user with
// TOTP, a code: two requests, each throttled on the user's and the
// address's keys — the same keys as proxy passwords, so a name or address
// has one budget of guesses whatever it guesses at.

// Password checks a user's password sent from client on the web login form.
// Unlike User, it does not refuse a user with TOTP: the caller asks for
// their code next (User.TOTP) and calls TOTP. The password is checked
// inside an attempt on the user's and the address's keys (Limiter.Begin).
// Failures wrap store.ErrBadCredentials or are a *LockedOutError, returned
// without checking the password while the user or address is locked out.
// When ctx ends while the check waits, the error wraps ctx's.
func (g *Guard) Password(ctx context.Context, client netip.Addr, name, password string) (store.User, error) {
	addrKey, userKey := AddrKey(client), UserKey(name)
	a, wait, err := g.limiter.Begin(ctx, userKey, addrKey)
	if err != nil {
		return store.User{}, fmt.Errorf("check password of %q: %w", name, err)
	}
	if wait > 0 {
		return store.User{}, &LockedOutError{Wait: wait}
	}
	g.checking()
	u, err := g.store.CheckPassword(ctx, name, password)
	switch {
	case err == nil:
		a.Release()
		if u.TOTP {
			// Half a login. The user's failures are not forgotten yet:
			// whoever knows the password must not be able to reset the
			// count of wrong codes by entering it again. TOTP audits the
			// outcome.
			return u, nil
		}
		g.limiter.Success(userKey)
		g.auditWeb(name, client, "web login: password")
		return u, nil
	case errors.Is(err, store.ErrBadCredentials):
		ev := store.AuditEvent{Kind: store.AuditLogin, User: name, Reason: fmt.Errorf("web login: %w", err).Error()}
		return store.User{}, g.failed(ev, client, err, a.Fail())
	default:
		a.Release()
		return store.User{}, err
	}
}

// TOTP checks the code of a user whose password Password has just
// accepted, sent from client. A code is accepted once (store.CheckTOTP).
// It is checked inside an attempt on the user's and the address's keys,
// like a password, and wrong codes count as failed logins of both; while
// either is locked out the code is refused without checking, and a
// *LockedOutError is returned. Other failures wrap
// store.ErrBadCredentials. When ctx ends while it waits for attempts in
// flight, the error wraps ctx's.
func (g *Guard) TOTP(ctx context.Context, client netip.Addr, name, code string) error {
	addrKey, userKey := AddrKey(client), UserKey(name)
	a, wait, err := g.limiter.Begin(ctx, userKey, addrKey)
	if err != nil {
		return fmt.Errorf("check TOTP code of %q: %w", name, err)
	}
	if wait > 0 {
		return &LockedOutError{Wait: wait}
	}
	g.checking()
	err = g.store.CheckTOTP(name, code)
	switch {
	case err == nil:
		a.Release()
		g.limiter.Success(userKey)
		g.auditWeb(name, client, "web login: password and TOTP")
		return nil
	case errors.Is(err, store.ErrBadCredentials):
		ev := store.AuditEvent{Kind: store.AuditLogin, User: name,
			Reason: fmt.Errorf("web login: password right, TOTP refused: %w", err).Error()}
		return g.failed(ev, client, err, a.Fail())
	default:
		a.Release()
		return err
	}
}

// auditWeb records a successful web login. Unlike auditOK it writes every
// one: each makes a session, and people log in by hand, not per request.
func (g *Guard) auditWeb(name string, client netip.Addr, reason string) {
	g.store.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: true, User: name, Client: addrString(client), Reason: reason})
}
