package store

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Credential is who a request acts as, once authenticated: a user, and the
// token used if any.
type Credential struct {
	User      User
	TokenID   string // "" when the user's password or a web session was used
	SessionID string // the web session's public id, when one was used
	Devices   string // the token's device pattern; "" for all
}

// Allows reports whether the credential may reach d: the user may
// (CanAccess) and the token's device pattern, if any, matches d.ID.
func (c Credential) Allows(d Device) bool {
	if !CanAccess(c.User, d) {
		return false
	}
	if c.Devices == "" {
		return true
	}
	ok, err := path.Match(c.Devices, d.ID)
	return err == nil && ok
}

// Authenticate checks a user name and secret as sent in a proxy's Basic
// credentials. A secret that looks like a token is checked as a token of
// that user (wrong, revoked, expired or another user's: ErrBadCredentials;
// expired also wraps ErrExpired); it records the token's use. Any other
// secret is the user's password, refused for users with TOTP (they use
// tokens). Every failure of the credential wraps ErrBadCredentials, with a
// reason in the message fit for the audit log, never for the client; an
// error that does not is a fault of the store (an unreadable record) or
// ctx's, which ended while a password waited for its argon2id check.
func (s *Store) Authenticate(ctx context.Context, name, secret string) (Credential, error) {
	if checkUserName(name) != nil {
		// The name is not quoted: a malformed one may be a misplaced secret.
		return Credential{}, fmt.Errorf("authenticate: malformed user name: %w", ErrBadCredentials)
	}
	if LooksLikeToken(secret) {
		c, err := s.checkToken(secret, name)
		if err != nil {
			return Credential{}, fmt.Errorf("authenticate %q: %w", name, err)
		}
		return c, nil
	}
	// The password is checked even for a user with TOTP, so the answer
	// takes the same time whether or not the user has TOTP.
	u, err := s.CheckPassword(ctx, name, secret)
	if err != nil {
		return Credential{}, fmt.Errorf("authenticate %q with password: %w", name, err)
	}
	if u.TOTP {
		return Credential{}, fmt.Errorf("authenticate %q: password not accepted for a user with TOTP; use an API token: %w", name, ErrBadCredentials)
	}
	return Credential{User: u}, nil
}

// AuthenticateToken checks a bearer token on its own (the user is the
// token's), as Authenticate does for tokens.
func (s *Store) AuthenticateToken(token string) (Credential, error) {
	c, err := s.checkToken(token, "")
	if err != nil {
		return Credential{}, fmt.Errorf("authenticate token: %w", err)
	}
	return c, nil
}

// checkToken checks token, which must belong to owner unless owner is "",
// and records its use. An unknown id costs the same hash and comparison as
// a wrong secret.
//
// A successful check is cached for up to credCacheTTL under a hash of the
// whole token (see credCache), so a busy token costs one SHA-256 of the
// token string per request, not a read transaction and two JSON decodes. What a check decides
// besides the secret is decided again on every hit: the owner, and the
// expiry by the store's clock. Revoking a token, removing its user or
// changing the user drops the cache (tokensChanged, usersChanged), so the
// next request reads the records again.
func (s *Store) checkToken(token, owner string) (Credential, error) {
	id, secret, ok := parseRandomKey(TokenPrefix, token)
	if !ok {
		return Credential{}, fmt.Errorf("malformed token: %w", ErrBadCredentials)
	}
	now := s.now()
	key := newTokenKey(token)
	if t, ok := s.tokens.get(key); ok {
		if err := tokenUsable(&t.rec, owner, now); err != nil {
			return Credential{}, err
		}
		return s.useToken(key, &t.rec, t.user, now), nil
	}
	gen := s.tokens.generation()
	var (
		r         tokenRecord
		u         userRecord
		found     = true
		userFound = true
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getToken(tx, id)
		if errors.Is(err, ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("token %s: %w", id, err)
		}
		u, err = getUser(tx, r.User)
		if errors.Is(err, ErrNotFound) {
			userFound = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("user %q of token %s: %w", r.User, id, err)
		}
		return nil
	})
	if err != nil {
		return Credential{}, err
	}
	stored := r.SecretHash
	if !found {
		stored = dummySecretHash
	}
	match, err := verifySecret(stored, secret)
	if err != nil {
		return Credential{}, fmt.Errorf("token %s: %w", id, err)
	}
	switch {
	case !found:
		return Credential{}, fmt.Errorf("unknown token %s: %w", id, ErrBadCredentials)
	case !match:
		return Credential{}, fmt.Errorf("wrong secret for token %s: %w", id, ErrBadCredentials)
	case !userFound:
		// RemoveUser deletes a user's tokens with it; this is a leftover.
		return Credential{}, fmt.Errorf("token %s: user %q does not exist: %w", id, r.User, ErrBadCredentials)
	}
	if err := tokenUsable(&r, owner, now); err != nil {
		return Credential{}, err
	}
	r.SecretHash = ""
	s.tokens.put(gen, key, cachedToken{rec: r, user: u.user()})
	return s.useToken(key, &r, u.user(), now), nil
}

// tokenUsable checks what a token check decides besides the secret, on a
// cache hit as on a read: r must belong to owner unless owner is "", and
// must not have expired at now.
func tokenUsable(r *tokenRecord, owner string, now time.Time) error {
	switch {
	case owner != "" && r.User != owner:
		return fmt.Errorf("token %s belongs to another user: %w", r.ID, ErrBadCredentials)
	case r.expired(now):
		return fmt.Errorf("token %s expired: %w: %w", r.ID, ErrBadCredentials, ErrExpired)
	}
	return nil
}

// useToken records the use of token r of user u at now and returns the
// credential. When the use is marked for writing, the cached entry under
// key learns the new last use, so later hits do not mark it again within
// the minute.
func (s *Store) useToken(key credKey, r *tokenRecord, u User, now time.Time) Credential {
	if s.recordTokenUse(r, now) {
		s.tokens.update(key, func(t *cachedToken) { t.rec.LastUsed = r.LastUsed })
	}
	return Credential{User: u, TokenID: r.ID, Devices: r.Devices}
}

// CredentialValid reports whether c would still be accepted now, and
// returns it refreshed from the records: the user still exists (the
// refreshed credential carries their current role and groups; callers
// re-run Allows with it); a password credential's user has not enabled
// TOTP since; c's token, if any, still exists, is the user's and has not
// expired; c's web session, if any, is still live. Used to re-check open
// streams after admin changes. When it
// reports false the returned credential is the zero Credential, which
// allows nothing.
func (s *Store) CredentialValid(c Credential) (Credential, bool) {
	now := s.now()
	var (
		fresh Credential
		sess  sessionRecord
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		u, err := getUser(tx, c.User.Name)
		if err != nil {
			return err
		}
		if c.SessionID != "" {
			// A web session: still there (not logged out, not pruned,
			// not ended with its user's password) and not over.
			sess, err = getSession(tx, c.SessionID)
			if err != nil {
				return err
			}
			if sess.User != u.Name {
				return ErrBadCredentials
			}
			fresh = Credential{User: u.user(), SessionID: sess.ID}
			return nil
		}
		if c.TokenID == "" {
			if u.TOTPSecret != "" {
				return ErrBadCredentials
			}
			fresh = Credential{User: u.user()}
			return nil
		}
		r, err := getToken(tx, c.TokenID)
		if err != nil {
			return err
		}
		if r.User != u.Name || r.expired(now) {
			return ErrBadCredentials
		}
		fresh = Credential{User: u.user(), TokenID: r.ID, Devices: r.Devices}
		return nil
	})
	if err != nil {
		// Also when the records cannot be read: a stream is not kept open
		// on a credential that cannot be confirmed.
		return Credential{}, false
	}
	// Outside the read transaction: the session write-behind's lock is
	// also taken inside write transactions (pruneSessions), which may wait
	// for readers.
	if c.SessionID != "" && sess.over(now, s.sessionLastSeen(&sess)) != "" {
		return Credential{}, false
	}
	return fresh, true
}
