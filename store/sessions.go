package store

import "time"

// Web sessions: server-side records in the bucket "sessions", one per
// login on the admin host and one per device subdomain a user has opened
// (DESIGN.md, "Authentication and access"). The cookie holds the session
// token, SessionPrefix and the randkey.go shape; only the hash of its secret
// is stored.

// SessionPrefix starts every session token.
const SessionPrefix = "rfs_"

const (
	// SessionIdle ends a session not used for this long.
	SessionIdle = 8 * time.Hour
	// SessionMax ends a session this long after it was made, used or not.
	SessionMax = 24 * time.Hour
)

// Session is a web session's record.
type Session struct {
	ID       string // 16 hex digits, public (for logs and the audit log)
	User     string
	Device   string // "" for the admin host; else the one device subdomain it is valid on
	Created  time.Time
	LastSeen time.Time // kept fresh within a minute while in use
}

// CreateSession makes a session for user (who must exist), valid on the
// admin host (device "") or on one device's subdomain, and returns its
// token for the cookie.
func (s *Store) CreateSession(user, device string) (token string, sess Session, err error) {
	return "", Session{}, errTODO
}

// CheckSession returns the session and its user's current record if token
// is a live session valid for device ("" for the admin host). A wrong,
// unknown or other device's token wraps ErrBadCredentials; an idle or too
// old one ErrExpired too (and is deleted). Use is recorded in memory and
// written at most once a minute per session.
func (s *Store) CheckSession(token, device string) (Session, User, error) {
	return Session{}, User{}, errTODO
}

// DeleteSession ends the session of token (logout). Ending an unknown or
// ended session is not an error.
func (s *Store) DeleteSession(token string) error { return errTODO }

// DeleteUserSessions ends every session of user and returns how many.
func (s *Store) DeleteUserSessions(user string) (int, error) { return 0, errTODO }
