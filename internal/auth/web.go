package auth

import (
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
// their code next (User.TOTP) and calls TOTP. Failures wrap
// store.ErrBadCredentials or are a *LockedOutError, returned
// without checking the password while the user or address is locked out.
func (g *Guard) Password(client netip.Addr, name, password string) (store.User, error) {
	addrKey, userKey := AddrKey(client), UserKey(name)
	if d := g.limiter.Blocked(userKey, addrKey); d > 0 {
		return store.User{}, &LockedOutError{Wait: d}
	}
	u, err := g.store.CheckPassword(name, password)
	if err == nil {
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
	}
	if !errors.Is(err, store.ErrBadCredentials) {
		return store.User{}, err
	}
	g.failed(store.AuditEvent{Kind: store.AuditLogin, User: name}, client, fmt.Errorf("web login: %w", err), userKey, addrKey)
	return store.User{}, err
}

// TOTP checks the code of a user whose password Password has just
// accepted, sent from client. A code is accepted once (store.CheckTOTP).
// Wrong codes count as failed logins of the user and the address; while
// either is locked out the code is refused without checking, and a
// *LockedOutError is returned. Other failures wrap
// store.ErrBadCredentials.
func (g *Guard) TOTP(client netip.Addr, name, code string) error {
	addrKey, userKey := AddrKey(client), UserKey(name)
	if d := g.limiter.Blocked(userKey, addrKey); d > 0 {
		return &LockedOutError{Wait: d}
	}
	err := g.store.CheckTOTP(name, code)
	if err == nil {
		g.limiter.Success(userKey)
		g.auditWeb(name, client, "web login: password and TOTP")
		return nil
	}
	if !errors.Is(err, store.ErrBadCredentials) {
		return err
	}
	g.failed(store.AuditEvent{Kind: store.AuditLogin, User: name}, client,
		fmt.Errorf("web login: password right, TOTP refused: %w", err), userKey, addrKey)
	return err
}

// auditWeb records a successful web login. Unlike auditOK it writes every
// one: each makes a session, and people log in by hand, not per request.
func (g *Guard) auditWeb(name string, client netip.Addr, reason string) {
	g.store.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: true, User: name, Client: addrString(client), Reason: reason})
}
