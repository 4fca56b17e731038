package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Web sessions: server-side records in the bucket "sessions", one per
// login on the admin host and one per device subdomain a user has opened
// (DESIGN.md, "Authentication and access"). The cookie holds the session
// token, SessionPrefix and the randkey.go shape; only the hash of its secret
// is stored, under the id's 16 hex digits.
//
// A session ends SessionIdle after its last use or SessionMax after it was
// made, whichever comes first. Uses are noted in memory and written by the
// store's writer goroutine at most once a minute per session, like token
// last-use times (tokens.go); a check reads the newest use, written or not.
// A check that finds a session over refuses it at once and leaves the
// deletion to the writer; an hourly pass deletes sessions nobody presents
// again.

// SessionPrefix starts every session token.
const SessionPrefix = "rfs_"

const (
	// SessionIdle ends a session not used for this long.
	SessionIdle = 8 * time.Hour
	// SessionMax ends a session this long after it was made, used or not.
	SessionMax = 24 * time.Hour

	// sessionUseEvery is how stale a stored last-seen time may get while
	// the session is in use: a browser loading a page of fifty resources
	// costs no write, a busy session one a minute.
	sessionUseEvery = time.Minute

	// sessionPruneEvery is how often the writer looks for ended sessions;
	// the first tick after Open looks too.
	sessionPruneEvery = time.Hour

	// sessionPruneChunk is how many records one pruning transaction reads,
	// so a large table is walked in steps that let other writers in.
	sessionPruneChunk = 10000
)

// Session is a web session's record.
type Session struct {
	ID       string // 16 hex digits, public (for logs and the audit log)
	User     string
	Device   string // "" for the admin host; else the one device subdomain it is valid on
	Created  time.Time
	LastSeen time.Time // kept fresh within a minute while in use
}

// sessionRecord is the stored form of a session, a JSON value in the
// sessions bucket under the id's 16 hex digits. SecretHash is hashSecret
// of the 16 raw secret bytes.
type sessionRecord struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Device     string    `json:"device,omitempty"`
	Created    time.Time `json:"created"`
	LastSeen   time.Time `json:"last_seen"`
	SecretHash string    `json:"secret_hash"`
}

func (r *sessionRecord) session() Session {
	return Session{ID: r.ID, User: r.User, Device: r.Device, Created: r.Created, LastSeen: r.LastSeen}
}

// over says why the session is over at now, given last, its newest use
// (written or not), or returns "" while it is live.
func (r *sessionRecord) over(now, last time.Time) string {
	switch {
	case !now.Before(r.Created.Add(SessionMax)):
		return fmt.Sprintf("made more than %v ago", SessionMax)
	case !now.Before(last.Add(SessionIdle)):
		return fmt.Sprintf("unused for %v", SessionIdle)
	}
	return ""
}

// sessionHost names the host a session is valid on, for error messages.
func sessionHost(device string) string {
	if device == "" {
		return "the admin host"
	}
	return fmt.Sprintf("device %q", device)
}

// CreateSession makes a session for user (who must exist), valid on the
// admin host (device "") or on one device's subdomain, and returns its
// token for the cookie. The device must be a valid device id (ErrInvalid)
// but need not exist: whether the user may reach it is checked on every
// request, not here.
func (s *Store) CreateSession(user, device string) (token string, sess Session, err error) {
	if checkUserName(user) != nil {
		return "", Session{}, fmt.Errorf("create session for %q: user %w", truncate(user), ErrNotFound)
	}
	if device != "" {
		if err := checkDeviceID(device); err != nil {
			return "", Session{}, fmt.Errorf("create session for %q: %w", user, fieldErr("device", err))
		}
	}
	token, id, secret, err := newRandomKey(SessionPrefix)
	if err != nil {
		return "", Session{}, fmt.Errorf("create session for %q: %w", user, err)
	}
	now := s.now().UTC()
	r := sessionRecord{
		ID:         id,
		User:       user,
		Device:     device,
		Created:    now,
		LastSeen:   now,
		SecretHash: hashSecret(secret),
	}
	data, err := json.Marshal(&r)
	if err != nil {
		return "", Session{}, fmt.Errorf("create session for %q: %w", user, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getUser(tx, user); err != nil {
			return fmt.Errorf("user %w", err)
		}
		b := tx.Bucket(bucketSessions)
		if b.Get([]byte(id)) != nil {
			// 2^-64 for any pair of sessions; not worth a retry loop.
			return fmt.Errorf("session id %s %w", id, ErrExists)
		}
		return b.Put([]byte(id), data)
	})
	if err != nil {
		return "", Session{}, fmt.Errorf("create session for %q on %s: %w", user, sessionHost(device), err)
	}
	return token, r.session(), nil
}

// CheckSession returns the session and its user's current record if token
// is a live session valid for device ("" for the admin host). A wrong,
// unknown or other device's token wraps ErrBadCredentials; an idle or too
// old one ErrExpired too (and is deleted). Use is recorded in memory and
// written at most once a minute per session.
//
// A token of the wrong shape fails at once (the shape is public); a
// well-formed one with an unknown id costs the same hash and comparison as
// a wrong secret. An error that wraps neither sentinel is a fault of the
// store (an unreadable record). Messages name the session's public id,
// never the token.
func (s *Store) CheckSession(token, device string) (Session, User, error) {
	id, secret, ok := parseRandomKey(SessionPrefix, token)
	if !ok {
		return Session{}, User{}, fmt.Errorf("check session: malformed token: %w", ErrBadCredentials)
	}
	var (
		r         sessionRecord
		u         userRecord
		found     = true
		userFound = true
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getSession(tx, id)
		if errors.Is(err, ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		u, err = getUser(tx, r.User)
		if errors.Is(err, ErrNotFound) {
			userFound = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("user %q: %w", r.User, err)
		}
		return nil
	})
	if err != nil {
		return Session{}, User{}, fmt.Errorf("check session %s: %w", id, err)
	}
	stored := r.SecretHash
	if !found {
		stored = dummySecretHash
	}
	match, err := verifySecret(stored, secret)
	if err != nil {
		return Session{}, User{}, fmt.Errorf("check session %s: %w", id, err)
	}
	switch {
	case !found:
		return Session{}, User{}, fmt.Errorf("check session: unknown session %s: %w", id, ErrBadCredentials)
	case !match:
		return Session{}, User{}, fmt.Errorf("check session %s: wrong secret: %w", id, ErrBadCredentials)
	case r.Device != device:
		// A cookie carried to another subdomain, or a device's cookie
		// presented to the admin host, is worth nothing there (issue 4).
		return Session{}, User{}, fmt.Errorf("check session %s: valid only on %s: %w", id, sessionHost(r.Device), ErrBadCredentials)
	}
	// The clock is read after the lookup, so a slow read cannot stretch a
	// session past its end.
	now := s.now().UTC()
	last := s.sessionLastSeen(&r)
	if why := r.over(now, last); why != "" {
		s.endSessionLater(id, last)
		return Session{}, User{}, fmt.Errorf("check session %s of %q: %s: %w: %w", id, r.User, why, ErrBadCredentials, ErrExpired)
	}
	if !userFound {
		// RemoveUser deletes a user's sessions with it; this is a leftover.
		s.endSessionLater(id, last)
		return Session{}, User{}, fmt.Errorf("check session %s: user %q does not exist: %w", id, r.User, ErrBadCredentials)
	}
	s.recordSessionUse(&r, now)
	sess := r.session()
	sess.LastSeen = now
	return sess, u.user(), nil
}

// DeleteSession ends the session of token (logout). Ending an unknown or
// ended session is not an error, nor is a malformed token: there is nothing
// to end. The secret must match, so the public id alone (it is in logs)
// cannot end someone else's session.
func (s *Store) DeleteSession(token string) error {
	id, secret, ok := parseRandomKey(SessionPrefix, token)
	if !ok {
		return nil
	}
	deleted := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getSession(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		match, err := verifySecret(r.SecretHash, secret)
		if err != nil || !match {
			return err
		}
		deleted = true
		return tx.Bucket(bucketSessions).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	if deleted {
		s.sessionUse.forget(id)
	}
	return nil
}

// DeleteUserSessions ends every session of user and returns how many. A
// user who does not exist has no sessions to end.
func (s *Store) DeleteUserSessions(user string) (int, error) {
	if checkUserName(user) != nil {
		return 0, nil
	}
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		ids, err = deleteUserSessions(tx, user)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete sessions of %q: %w", user, err)
	}
	s.sessionUse.forget(ids...)
	return len(ids), nil
}

// getSession reads and decodes a session record inside tx. It returns
// ErrNotFound itself (unwrapped) when there is no such session.
func getSession(tx *bolt.Tx, id string) (sessionRecord, error) {
	return getRecord[sessionRecord](tx, bucketSessions, id, "session")
}

// deleteUserSessions deletes the sessions of user inside tx and returns
// their ids. Callers pass the ids to sessionUse.forget once tx commits.
func deleteUserSessions(tx *bolt.Tx, user string) ([]string, error) {
	return deleteUserRecords(tx, bucketSessions, user, "session")
}

// sessionMark is what the writer is to do with a session: write last, its
// newest use, or, once a check found the session over, delete it. An end
// is newer than any use, so a use that raced with the check cannot revive
// the session; last stays for the checks that come before the delete.
type sessionMark struct {
	last time.Time
	end  bool
}

func (m sessionMark) after(o sessionMark) bool {
	if m.end != o.end {
		return m.end
	}
	return m.last.After(o.last)
}

// newSessionUse returns the write-behind of session uses and ends. It
// holds the newest use of a session, written or not, so the idle timeout
// counts from it; an entry goes when it is written, when its session ends,
// or when it is too old to keep any session alive (pruneSessions).
func newSessionUse(db *bolt.DB) *writeBehind[string, sessionMark] {
	return newWriteBehind(db, "session last-seen times", sessionMark.after, writeSessionMark)
}

// sessionLastSeen returns the newest use of session r, as just read from
// the database: its stored time or a newer one not yet written.
func (s *Store) sessionLastSeen(r *sessionRecord) time.Time {
	return s.sessionUse.newestOf(r.ID, sessionMark{last: r.LastSeen}).last
}

// recordSessionUse notes that session r, as just read from the database,
// was used at t. It is marked for writing only if its stored time is a
// minute old, so between flushes a busy session is not marked again.
func (s *Store) recordSessionUse(r *sessionRecord, t time.Time) {
	if !t.After(r.LastSeen) {
		return // the stored time says as much
	}
	if t.Sub(r.LastSeen) >= sessionUseEvery {
		s.sessionUse.put(r.ID, sessionMark{last: t})
	} else {
		s.sessionUse.note(r.ID, sessionMark{last: t})
	}
}

// endSessionLater asks the writer to delete session id, found over by a
// check that must not wait for a write transaction; last is the newest use
// the check saw.
func (s *Store) endSessionLater(id string, last time.Time) {
	s.sessionUse.put(id, sessionMark{last: last, end: true})
}

// writeSessionMark is the apply step of the session write-behind. An ended
// session is deleted. A use is written only if the stored time is at least
// sessionUseEvery older, which holds even when a use raced with the
// previous flush. Unlike device and token times, a written use leaves
// memory (unless a newer one came meanwhile): sessions come and go by the
// thousand, and a check reads the record anyway.
func writeSessionMark(tx *bolt.Tx, id string, m sessionMark) (drop bool, err error) {
	if m.end {
		if err := tx.Bucket(bucketSessions).Delete([]byte(id)); err != nil {
			return false, fmt.Errorf("delete session %s: %w", id, err)
		}
		return true, nil
	}
	gone, written, err := rewriteRecord(tx, bucketSessions, id, "session", func(r *sessionRecord) bool {
		if m.last.Sub(r.LastSeen) < sessionUseEvery {
			return false // a fresh stored time needs no update
		}
		r.LastSeen = m.last
		return true
	})
	return gone || written, err
}

// pruneSessions deletes the sessions that are over and those of users that
// no longer exist, at most once per sessionPruneEvery, in transactions
// that each read at most sessionPruneChunk records. It also drops
// in-memory use times too old to keep any session alive. Only writeLoop
// calls it.
func (s *Store) pruneSessions() error {
	now := s.now().UTC()
	if !s.sessionPrune.due(now, sessionPruneEvery) {
		return nil
	}
	err := walkChunks(func(from []byte) ([]byte, error) { return s.pruneSessionsChunk(now, from) })
	if err != nil {
		return fmt.Errorf("prune sessions: %w", err)
	}
	// An end stays: the writer still has a record to delete.
	s.sessionUse.dropIf(func(_ string, m sessionMark) bool {
		return !m.end && !now.Before(m.last.Add(SessionIdle))
	})
	s.sessionPrune.ran(now)
	return nil
}

// pruneSessionsChunk deletes the ended sessions among up to
// sessionPruneChunk records from key from (the first key when nil). It
// returns the key to continue at, or nil at the end of the bucket. A record
// that cannot be decoded is passed over: CheckSession reports it as the
// store fault it is, and deleting it would hide that.
func (s *Store) pruneSessionsChunk(now time.Time, from []byte) (next []byte, err error) {
	var gone []string
	err = s.db.Update(func(tx *bolt.Tx) error {
		gone = gone[:0]
		users := tx.Bucket(bucketUsers)
		b := tx.Bucket(bucketSessions)
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		var idle []sessionRecord // over by their stored time, perhaps not by their newest use
		for n := 0; k != nil; k, v = c.Next() {
			if n == sessionPruneChunk {
				next = slices.Clone(k)
				break
			}
			n++
			var r sessionRecord
			if json.Unmarshal(v, &r) != nil {
				continue
			}
			r.ID = string(k) // the key is what is deleted
			switch {
			case users.Get([]byte(r.User)) == nil, !now.Before(r.Created.Add(SessionMax)):
				gone = append(gone, r.ID)
			case !now.Before(r.LastSeen.Add(SessionIdle)):
				idle = append(idle, r) // unless a newer use is only in memory
			}
		}
		for i := range idle {
			if r := &idle[i]; r.over(now, s.sessionLastSeen(r)) != "" {
				gone = append(gone, r.ID)
			}
		}
		for _, id := range gone {
			if err := b.Delete([]byte(id)); err != nil {
				return fmt.Errorf("delete session %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.sessionUse.forget(gone...)
	return next, nil
}
