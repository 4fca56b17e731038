package store

import (
	"sync"
	"time"
)

// API tokens. A token is TokenPrefix followed by unpadded base64url of 24
// random bytes: the first 8 are the token's public id (its bbolt key, shown
// in lists as 16 hex digits), the other 16 (128 bits) the secret, of which
// only a SHA-256 hash is stored and compared in constant time.

// TokenPrefix starts every API token, so a token is recognisable in a
// password field, in logs and to secret scanners.
const TokenPrefix = "rfl_"

// Token is an API token's record; the secret is not in it.
type Token struct {
	ID       string    // 16 hex digits, public
	User     string    // the user it acts as
	Name     string    // what it is for, e.g. "laptop"; unique per user
	Devices  string    // path.Match pattern of device ids it may reach; "" for all
	Created  time.Time //
	Expires  time.Time // zero: never
	LastUsed time.Time // at most a minute old while in use; zero if never used
}

// LooksLikeToken reports whether secret has the shape of an API token
// (prefix and length), without checking it.
func LooksLikeToken(secret string) bool { return false }

// CreateToken makes a token for t.User with t.Name, t.Devices and
// t.Expires, and returns the token string (shown once) and its record. The
// user must exist (ErrNotFound); the name must be unique for the user
// (ErrExists); the pattern must be a valid path.Match pattern (ErrInvalid).
func (s *Store) CreateToken(t Token) (token string, rec Token, err error) {
	return "", Token{}, errTODO
}

// Tokens returns the tokens of user, or all tokens for "", sorted by user
// then name, with their newest last-use times.
func (s *Store) Tokens(user string) ([]Token, error) { return nil, errTODO }

// RevokeToken deletes the token with the given id and returns its record.
func (s *Store) RevokeToken(id string) (Token, error) { return Token{}, errTODO }

// tokenUse holds last-use times not yet written; writeLoop flushes them,
// at most one write a minute per token.
type tokenUse struct {
	mu sync.Mutex
}

func (s *Store) flushTokenUse() error { return nil }
