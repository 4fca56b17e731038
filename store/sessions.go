package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
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
			return "", Session{}, fmt.Errorf("create session for %q: %w", user, err)
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
	if why := r.over(now, s.sessionLastSeen(&r)); why != "" {
		s.endSessionLater(id)
		return Session{}, User{}, fmt.Errorf("check session %s of %q: %s: %w: %w", id, r.User, why, ErrBadCredentials, ErrExpired)
	}
	if !userFound {
		// RemoveUser deletes a user's sessions with it; this is a leftover.
		s.endSessionLater(id)
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
		s.forgetSessionUse(id)
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
	s.forgetSessionUse(ids...)
	return len(ids), nil
}

// getSession reads and decodes a session record inside tx. It returns
// ErrNotFound itself (unwrapped) when there is no such session.
func getSession(tx *bolt.Tx, id string) (sessionRecord, error) {
	return getRecord[sessionRecord](tx, bucketSessions, id, "session")
}

// deleteUserSessions deletes the sessions of user inside tx and returns
// their ids. Callers pass the ids to forgetSessionUse once tx commits.
func deleteUserSessions(tx *bolt.Tx, user string) ([]string, error) {
	return deleteUserRecords(tx, bucketSessions, user, "session")
}

// sessionUse holds what CheckSession learnt and the writer has not written
// yet. last holds the newest use of a session, written or not, so the idle
// timeout counts from it; an entry goes when it is written, when its
// session ends, or when it is too old to keep any session alive. dirty
// holds the ids whose stored time was a minute old or more when they were
// used; ended the ids found over, to be deleted.
type sessionUse struct {
	mu        sync.Mutex
	last      map[string]time.Time
	dirty     map[string]struct{}
	ended     map[string]struct{}
	lastPrune time.Time // when the last pruning pass finished; zero before the first
}

// init makes the maps on first use, so open need not.
func (u *sessionUse) init() {
	if u.last == nil {
		u.last = make(map[string]time.Time)
		u.dirty = make(map[string]struct{})
		u.ended = make(map[string]struct{})
	}
}

// sessionLastSeen returns the newest use of session r, as just read from
// the database: its stored time or a newer one not yet written.
func (s *Store) sessionLastSeen(r *sessionRecord) time.Time {
	u := &s.sessionUse
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.last[r.ID]; ok && t.After(r.LastSeen) {
		return t
	}
	return r.LastSeen
}

// recordSessionUse notes that session r, as just read from the database,
// was used at t. It is marked for writing only if its stored time is a
// minute old, so between flushes a busy session is not marked again.
func (s *Store) recordSessionUse(r *sessionRecord, t time.Time) {
	u := &s.sessionUse
	u.mu.Lock()
	defer u.mu.Unlock()
	u.init()
	if old, ok := u.last[r.ID]; ok && !t.After(old) {
		return
	}
	if !t.After(r.LastSeen) {
		return // the stored time says as much
	}
	u.last[r.ID] = t
	if t.Sub(r.LastSeen) >= sessionUseEvery {
		u.dirty[r.ID] = struct{}{}
	}
}

// endSessionLater asks the writer to delete session id, found over by a
// check that must not wait for a write transaction.
func (s *Store) endSessionLater(id string) {
	u := &s.sessionUse
	u.mu.Lock()
	defer u.mu.Unlock()
	u.init()
	u.ended[id] = struct{}{}
	delete(u.dirty, id)
}

// forgetSessionUse drops the in-memory state of deleted sessions.
func (s *Store) forgetSessionUse(ids ...string) {
	u := &s.sessionUse
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range ids {
		delete(u.last, id)
		delete(u.dirty, id)
		delete(u.ended, id)
	}
}

// flushSessionUse deletes the sessions found over and writes the dirty
// last-seen times, in one transaction. Only writeLoop calls it, so flushes
// never overlap. A time is written only if the stored one is at least
// sessionUseEvery older, which holds even when a use raced with the
// previous flush; a written time leaves memory unless a newer use came
// meanwhile. On failure the entries are marked again for the next flush.
func (s *Store) flushSessionUse() error {
	u := &s.sessionUse
	u.mu.Lock()
	if len(u.dirty) == 0 && len(u.ended) == 0 {
		u.mu.Unlock()
		return nil
	}
	batch := make(map[string]time.Time, len(u.dirty))
	for id := range u.dirty {
		batch[id] = u.last[id]
	}
	ended := make([]string, 0, len(u.ended))
	for id := range u.ended {
		ended = append(ended, id)
		delete(batch, id)
	}
	clear(u.dirty)
	clear(u.ended)
	u.mu.Unlock()

	var done []string // ids whose entry in last may go: written, or no record
	err := s.db.Update(func(tx *bolt.Tx) error {
		done = done[:0]
		b := tx.Bucket(bucketSessions)
		for _, id := range ended {
			if err := b.Delete([]byte(id)); err != nil {
				return fmt.Errorf("delete session %s: %w", id, err)
			}
		}
		for id, t := range batch {
			r, err := getSession(tx, id)
			if errors.Is(err, ErrNotFound) {
				done = append(done, id)
				continue
			}
			if err != nil || t.Sub(r.LastSeen) < sessionUseEvery {
				// An undecodable record cannot authenticate, so it has no
				// uses to record; a fresh stored time needs no update.
				continue
			}
			r.LastSeen = t
			data, err := json.Marshal(&r)
			if err != nil {
				return fmt.Errorf("encode session %s: %w", id, err)
			}
			if err := b.Put([]byte(id), data); err != nil {
				return fmt.Errorf("write session %s: %w", id, err)
			}
			done = append(done, id)
		}
		return nil
	})

	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		for id := range batch {
			if _, ok := u.last[id]; ok {
				u.dirty[id] = struct{}{}
			}
		}
		for _, id := range ended {
			u.ended[id] = struct{}{}
		}
		return fmt.Errorf("flush session last-seen times: %w", err)
	}
	for _, id := range ended {
		if _, again := u.ended[id]; !again {
			delete(u.last, id)
		}
	}
	for _, id := range done {
		// A use since the batch was taken is newer than what was written.
		if _, again := u.dirty[id]; !again && u.last[id].Equal(batch[id]) {
			delete(u.last, id)
		}
	}
	return nil
}

// pruneSessions deletes the sessions that are over and those of users that
// no longer exist, at most once per sessionPruneEvery, in transactions
// that each read at most sessionPruneChunk records. It also drops
// in-memory use times too old to keep any session alive. Only writeLoop
// calls it.
func (s *Store) pruneSessions() error {
	u := &s.sessionUse
	now := s.now().UTC()
	u.mu.Lock()
	due := u.lastPrune.IsZero() || now.Sub(u.lastPrune) >= sessionPruneEvery
	u.mu.Unlock()
	if !due {
		return nil
	}
	var from []byte
	for {
		next, err := s.pruneSessionsChunk(now, from)
		if err != nil {
			return fmt.Errorf("prune sessions: %w", err)
		}
		if next == nil {
			break
		}
		from = next
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, t := range u.last {
		if !now.Before(t.Add(SessionIdle)) {
			delete(u.last, id)
			delete(u.dirty, id)
		}
	}
	u.lastPrune = now
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
		if len(idle) > 0 {
			u := &s.sessionUse
			u.mu.Lock()
			for i := range idle {
				r := &idle[i]
				last := r.LastSeen
				if t, ok := u.last[r.ID]; ok && t.After(last) {
					last = t
				}
				if r.over(now, last) != "" {
					gone = append(gone, r.ID)
				}
			}
			u.mu.Unlock()
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
	s.forgetSessionUse(gone...)
	return next, nil
}
