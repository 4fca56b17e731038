package store

import "path"

// Credential is who a request acts as, once authenticated: a user, and the
// token used if any.
type Credential struct {
	User    User
	TokenID string // "" when the user's password was used
	Devices string // the token's device pattern; "" for all
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
// tokens). Every failure wraps ErrBadCredentials, with a reason in the
// message fit for the audit log, never for the client.
func (s *Store) Authenticate(name, secret string) (Credential, error) { return Credential{}, errTODO }

// AuthenticateToken checks a bearer token on its own (the user is the
// token's), as Authenticate does for tokens.
func (s *Store) AuthenticateToken(token string) (Credential, error) { return Credential{}, errTODO }

// CredentialValid reports whether c would still be accepted now: the user
// exists with the same role and groups as in c (callers re-run Allows with
// the refreshed credential), and c's token, if any, still exists and has
// not expired. It returns the refreshed credential. Used to re-check open
// streams after admin changes.
func (s *Store) CredentialValid(c Credential) (Credential, bool) { return c, false }
