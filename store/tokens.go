package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// API tokens. A token is TokenPrefix followed by unpadded base64url of 24
// random bytes: the first 8 are the token's public id (its bbolt key, shown
// in lists as 16 hex digits), the other 16 (128 bits) the secret, of which
// only a SHA-256 hash is stored and compared in constant time.

// TokenPrefix starts every API token, so a token is recognisable in a
// password field, in logs and to secret scanners.
const TokenPrefix = "rfl_"

const (
	maxTokenNameLen    = 64
	maxTokenPatternLen = 128

	// tokenUseEvery is how stale a stored last-use time may get while the
	// token is in use: a busy token costs one write a minute, not one per
	// request.
	tokenUseEvery = time.Minute

	// tokenPruneEvery is how often the writer looks for tokens expired
	// longer than TokenExpiredKeep; the first tick after Open looks too.
	tokenPruneEvery = time.Hour

	// tokenPruneChunk is how many records one pruning transaction reads,
	// so a large backlog is removed in steps that let other writers in.
	tokenPruneChunk = 10000
)

// TokenExpiredKeep is how long an expired token is kept, so that "token
// list" still shows it (a login that just stopped working, and why); after
// that the writer deletes it. Tools that log in through the API (the
// macchina.io remote-login) make a short-lived token per login, and without
// pruning the tokens bucket would only grow.
const TokenExpiredKeep = 7 * 24 * time.Hour

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

// tokenRecord is the stored form of a token, a JSON value in the tokens
// bucket under the id's 16 hex digits. SecretHash has the form of a device
// secret's hash (hashSecret) over the 16 raw secret bytes.
type tokenRecord struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Name       string    `json:"name"`
	Devices    string    `json:"devices,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires,omitzero"`
	LastUsed   time.Time `json:"last_used,omitzero"`
	SecretHash string    `json:"secret_hash"`
}

func (r *tokenRecord) token() Token {
	return Token{
		ID:       r.ID,
		User:     r.User,
		Name:     r.Name,
		Devices:  r.Devices,
		Created:  r.Created,
		Expires:  r.Expires,
		LastUsed: r.LastUsed,
	}
}

// expired reports whether the token is past its expiry at now.
func (r *tokenRecord) expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// LooksLikeToken reports whether secret has the shape of an API token
// (prefix and length), without checking it.
func LooksLikeToken(secret string) bool {
	return hasKeyShape(TokenPrefix, secret)
}

// CreateToken makes a token for t.User with t.Name, t.Devices and
// t.Expires, and returns the token string (shown once) and its record. The
// user must exist (ErrNotFound); the name must be unique for the user
// (ErrExists); the pattern must be a valid path.Match pattern (ErrInvalid),
// and Expires zero or in the future (ErrInvalid).
func (s *Store) CreateToken(t Token) (token string, rec Token, err error) {
	if checkUserName(t.User) != nil {
		return "", Token{}, fmt.Errorf("create token for %q: %w", truncate(t.User), fieldErr("user", fmt.Errorf("user %w", ErrNotFound)))
	}
	if err := checkTokenName(t.Name); err != nil {
		return "", Token{}, fmt.Errorf("create token for %q: %w", t.User, fieldErr("name", err))
	}
	if err := checkDevicePattern(t.Devices); err != nil {
		return "", Token{}, fmt.Errorf("create token %q for %q: %w", t.Name, t.User, fieldErr("devices", err))
	}
	now := s.now().UTC()
	if !t.Expires.IsZero() && !t.Expires.After(now) {
		return "", Token{}, fmt.Errorf("create token %q for %q: %w", t.Name, t.User, fieldErr("expires", fmt.Errorf("expiry %w: in the past", ErrInvalid)))
	}
	token, id, secret, err := newRandomKey(TokenPrefix)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token %q for %q: %w", t.Name, t.User, err)
	}
	r := tokenRecord{
		ID:         id,
		User:       t.User,
		Name:       t.Name,
		Devices:    t.Devices,
		Created:    now,
		SecretHash: hashSecret(secret),
	}
	if !t.Expires.IsZero() {
		r.Expires = t.Expires.UTC()
	}
	data, err := json.Marshal(&r)
	if err != nil {
		return "", Token{}, fmt.Errorf("create token %q for %q: %w", t.Name, t.User, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getUser(tx, t.User); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fieldErr("user", fmt.Errorf("user %w", err))
			}
			return fmt.Errorf("user %w", err)
		}
		b := tx.Bucket(bucketTokens)
		err := b.ForEach(func(k, v []byte) error {
			var old tokenRecord
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("decode token %s: %w", k, err)
			}
			if old.User == t.User && old.Name == t.Name {
				return ErrExists
			}
			return nil
		})
		if err != nil {
			return err
		}
		if b.Get([]byte(r.ID)) != nil {
			// 2^-64 for any pair of tokens; not worth a retry loop.
			return fmt.Errorf("token id %s %w", r.ID, ErrExists)
		}
		return b.Put([]byte(r.ID), data)
	})
	if err != nil {
		return "", Token{}, fmt.Errorf("create token %q for %q: %w", t.Name, t.User, err)
	}
	return token, r.token(), nil
}

// Tokens returns the tokens of user, or all tokens for "", sorted by user
// then name, with their newest last-use times. A user who does not exist
// has no tokens.
func (s *Store) Tokens(user string) ([]Token, error) {
	var tokens []Token
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var r tokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode token %s: %w", k, err)
			}
			if user == "" || r.User == user {
				tokens = append(tokens, r.token())
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	slices.SortFunc(tokens, func(a, b Token) int {
		return cmp.Or(strings.Compare(a.User, b.User), strings.Compare(a.Name, b.Name))
	})
	for i := range tokens {
		tokens[i].LastUsed = s.tokenUse.newestOf(tokens[i].ID, tokens[i].LastUsed)
	}
	return tokens, nil
}

// RevokeToken deletes the token with the given id and returns its record.
// The token stops working at once; closing streams opened with it is the
// caller's job (CredentialValid).
func (s *Store) RevokeToken(id string) (Token, error) {
	if !validKeyID(id) {
		return Token{}, fmt.Errorf("revoke token %q: %w", truncate(id), ErrNotFound)
	}
	var r tokenRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r, err = getToken(tx, id); err != nil {
			return err
		}
		return tx.Bucket(bucketTokens).Delete([]byte(id))
	})
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	s.tokensChanged()
	s.tokenUse.forget(id)
	return r.token(), nil
}

// getToken reads and decodes a token record inside tx. It returns
// ErrNotFound itself (unwrapped) when there is no such token.
func getToken(tx *bolt.Tx, id string) (tokenRecord, error) {
	return getRecord[tokenRecord](tx, bucketTokens, id, "token")
}

// deleteUserTokens deletes the tokens of user inside tx and returns their
// ids.
func deleteUserTokens(tx *bolt.Tx, user string) ([]string, error) {
	return deleteUserRecords(tx, bucketTokens, user, "token")
}

// checkTokenName accepts 1–64 characters of [A-Za-z0-9._@-].
func checkTokenName(name string) error {
	if !validName(name, maxTokenNameLen, "._@-") {
		return fmt.Errorf("token name %q %w: want 1-%d characters of A-Z a-z 0-9 . _ @ -", truncate(name), ErrInvalid, maxTokenNameLen)
	}
	return nil
}

// checkDevicePattern accepts "" (all devices) or a path.Match pattern of up
// to 128 printable ASCII characters.
func checkDevicePattern(p string) error {
	if len(p) > maxTokenPatternLen {
		return fmt.Errorf("device pattern %w: longer than %d bytes", ErrInvalid, maxTokenPatternLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] > '~' {
			return fmt.Errorf("device pattern %q %w: want printable ASCII", truncate(p), ErrInvalid)
		}
	}
	// Match checks the whole pattern's syntax even when it does not match.
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("device pattern %q %w: %v", p, ErrInvalid, err)
	}
	return nil
}

// newTokenUse returns the write-behind of token last-use times: it holds
// the newest use of each token, written or not, so Tokens shows it, and
// writes it at most once a minute per token.
func newTokenUse(db *bolt.DB) *writeBehind[string, time.Time] {
	return newWriteBehind(db, "token last-use times", time.Time.After, writeTokenUse)
}

// recordTokenUse notes that token r, as read from the database or the
// token cache, was used at t. It is marked for writing only if r's last
// use is a minute old; it then reports true and sets r.LastUsed to t, for
// the cache to keep, so a busy token is marked about once a minute, not
// on every request. Either way the use is visible to Tokens at once.
func (s *Store) recordTokenUse(r *tokenRecord, t time.Time) (marked bool) {
	t = t.UTC()
	if t.Sub(r.LastUsed) >= tokenUseEvery {
		s.tokenUse.put(r.ID, t)
		r.LastUsed = t
		return true
	}
	s.tokenUse.note(r.ID, t)
	return false
}

// writeTokenUse is the apply step of the token-use write-behind. A time is
// written only if the stored one is at least tokenUseEvery older, which
// holds even when a use raced with the previous flush. A written time
// stays in memory as the newest use; the use of a token that is gone
// leaves.
func writeTokenUse(tx *bolt.Tx, id string, t time.Time) (drop bool, err error) {
	gone, _, err := rewriteRecord(tx, bucketTokens, id, "token", func(r *tokenRecord) bool {
		if t.Sub(r.LastUsed) < tokenUseEvery {
			return false // a fresh stored time needs no update
		}
		r.LastUsed = t
		return true
	})
	return gone, err
}

// pruneTokens deletes the tokens that expired more than TokenExpiredKeep
// ago, at most once per tokenPruneEvery, in transactions that each read at
// most tokenPruneChunk records, and drops their in-memory use times. A pass
// that deletes any records audits one AuditTokenPrune event with the
// count. Only writeLoop calls it.
func (s *Store) pruneTokens() error {
	now := s.now().UTC()
	if !s.tokenPrune.due(now, tokenPruneEvery) {
		return nil
	}
	cutoff := now.Add(-TokenExpiredKeep)
	pruned := 0
	err := walkChunks(func(from []byte) ([]byte, error) {
		next, n, err := s.pruneTokensChunk(cutoff, from)
		pruned += n
		return next, err
	})
	// What was deleted before a failure is worth its event too.
	s.auditTokenPrune(now, pruned)
	if err != nil {
		return fmt.Errorf("prune tokens: %w", err)
	}
	s.tokenPrune.ran(now)
	return nil
}

// pruneTokensChunk deletes the tokens that expired before cutoff among up
// to tokenPruneChunk records from key from (the first key when nil), and
// forgets their use times. It returns the key to continue at, or nil at
// the end of the bucket, and how many it deleted. A record that cannot be
// decoded is passed over: a check of it reports the store fault it is, and
// deleting it would hide that.
func (s *Store) pruneTokensChunk(cutoff time.Time, from []byte) (next []byte, pruned int, err error) {
	var gone []string
	err = s.db.Update(func(tx *bolt.Tx) error {
		gone = gone[:0]
		b := tx.Bucket(bucketTokens)
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		for n := 0; k != nil; k, v = c.Next() {
			if n == tokenPruneChunk {
				next = slices.Clone(k)
				break
			}
			n++
			var r tokenRecord
			if json.Unmarshal(v, &r) != nil {
				continue
			}
			if !r.Expires.IsZero() && r.Expires.Before(cutoff) {
				gone = append(gone, string(k)) // the key is what is deleted
			}
		}
		// bbolt forbids changing a bucket while a cursor walks it.
		for _, id := range gone {
			if err := b.Delete([]byte(id)); err != nil {
				return fmt.Errorf("delete token %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(gone) > 0 {
		// Expired tokens are refused on a cache hit too; this keeps the
		// rule "a deleted token leaves the cache" without exceptions.
		s.tokensChanged()
	}
	s.tokenUse.forget(gone...)
	return next, len(gone), nil
}

// auditTokenPrune records a pruning pass that deleted n tokens; a pass that
// deleted none is not worth an event an hour.
func (s *Store) auditTokenPrune(now time.Time, n int) {
	if n == 0 {
		return
	}
	s.Audit(AuditEvent{
		Time:   now,
		Kind:   AuditTokenPrune,
		OK:     true,
		Reason: fmt.Sprintf("deleted %s expired more than %d days ago", plural(n, "token"), TokenExpiredKeep/(24*time.Hour)),
	})
}
