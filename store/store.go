// Package store keeps the reflector's persistent records in a single bbolt
// file in the data directory, as JSON values with one bucket per kind:
// "users" (accounts, password hashes, TOTP secrets), "devices" (with secret
// hashes and last-seen times), "groups" (which join users to devices, with
// device quotas), "tokens" (API tokens), "sessions" (web sessions),
// "enroll" (enrolment keys agents register themselves with), "hostkeys"
// (the devices' SSH host keys, trusted on first use), "audit" (the audit
// log) and "meta" (the schema version). It checks the credentials
// these guard — argon2id for passwords and the secrets devices bring
// along, SHA-256 for generated high-entropy secrets — with short-lived
// caches of verified passwords, tokens and adopted device secrets, so the
// proxy does not pay for argon2id on every CONNECT, nor a bearer token for
// a read transaction on every request, nor a reconnecting agent on every
// reconnect; device records, which the proxy reads for every request, are
// cached too. Every write that changes a cached record drops its cache.
// Admin changes are synchronous bbolt writes.
//
// Device last-seen times, token and session last-use times and session
// ends are frequent small updates: a write-behind (writebehind.go) keeps
// them in memory, visible to reads at once, and the store's one writer
// goroutine writes them in batches every second, before a backup and on
// Close. Audit events are queued and appended in batches by the same
// goroutine, dropped and counted rather than waited for when the queue is
// full (audit.go). A Store is safe for concurrent use.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	// dbFileName is the database file inside the data directory.
	dbFileName = "reflector.db"

	// schemaVersion is stored in meta/schema. Open refuses a database with
	// another version rather than misreading its records.
	schemaVersion = 1

	// lockTimeout bounds how long Open waits for the file lock. bbolt's
	// default (0) waits forever, which turns a second reflector started on
	// the same directory into a silent hang.
	lockTimeout = 2 * time.Second

	// flushInterval is how often the writer goroutine writes the batched
	// writes: last-seen and last-use times, session ends, audit events.
	flushInterval = time.Second
)

var (
	bucketUsers    = []byte("users")
	bucketDevices  = []byte("devices")
	bucketMeta     = []byte("meta")
	bucketGroups   = []byte("groups")
	bucketTokens   = []byte("tokens")
	bucketEnroll   = []byte("enroll")
	bucketAudit    = []byte("audit")
	bucketSessions = []byte("sessions")
	// bucketHostKeys is in hostkeys.go.

	keySchema = []byte("schema")
)

// Store is the reflector's record store. Create it with Open and release it
// with Close.
type Store struct {
	dir     string
	db      *bolt.DB
	creds   *credCache[credKey, User]        // verified passwords (users.go)
	tokens  *credCache[credKey, cachedToken] // verified tokens (credential.go)
	devices *credCache[string, Device]       // device records by id (devices.go)
	now     func() time.Time                 // time.Now; tests replace it before use

	argon      *argonGate   // bounds concurrent argon2id work (argon.go)
	devSecrets *secretCache // adopted device secrets that passed argon2id (argon.go)

	// Batched writes, flushed by writeLoop (writebehind.go, audit.go).
	lastSeen   *writeBehind[string, time.Time]   // device last-seen times (devices.go)
	tokenUse   *writeBehind[string, time.Time]   // token last-use times (tokens.go)
	sessionUse *writeBehind[string, sessionMark] // session last-seen times and ends (sessions.go)
	audit      auditLog                          // pending audit events (audit.go)

	tokenPrune   passClock // pruneTokens (tokens.go)
	sessionPrune passClock // pruneSessions (sessions.go)

	done       chan struct{}   // closed by Close to stop writeLoop
	flushNow   chan chan error // asks writeLoop to write every batch now (Backup)
	writerDone chan struct{}   // closed by writeLoop when it has returned
	flushErr   error           // final flush result; written by writeLoop before writerDone

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir: the directory with mode
// 0700 and the database file dir/reflector.db with mode 0600. If another
// reflector holds the database, Open fails within about two seconds with an
// error wrapping ErrInUse.
func Open(dir string) (*Store, error) {
	return open(dir, flushInterval)
}

// open is Open with a chosen flush interval, so tests can hold last-seen
// writes back or hurry them along.
func open(dir string, every time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	path := filepath.Join(dir, dbFileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w (database lock not acquired within %v)", dir, ErrInUse, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := db.Update(initSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	devSecrets, err := newSecretCache()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		dir:        dir,
		db:         db,
		creds:      newCredCache[credKey](cloneUser),
		tokens:     newCredCache[credKey](cloneCachedToken),
		devices:    newCredCache[string](cloneDevice),
		now:        time.Now,
		argon:      newArgonGate(),
		devSecrets: devSecrets,
		lastSeen:   newLastSeen(db),
		tokenUse:   newTokenUse(db),
		sessionUse: newSessionUse(db),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
		flushNow:   make(chan chan error),
	}
	s.audit.init()
	go s.writeLoop(every)
	return s, nil
}

// initSchema creates the buckets of a new database and checks the schema
// version of an existing one.
func initSchema(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketUsers, bucketDevices, bucketMeta, bucketGroups, bucketTokens, bucketEnroll, bucketAudit, bucketSessions, bucketHostKeys} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchema)
	if v == nil {
		return meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion)))
	}
	if n, err := strconv.Atoi(string(v)); err != nil || n != schemaVersion {
		return fmt.Errorf("unsupported schema version %q (want %d)", v, schemaVersion)
	}
	return nil
}

// Dir returns the data directory the store was opened in.
func (s *Store) Dir() string { return s.dir }

// Close writes pending batches (last-seen and last-use times, session ends,
// audit events), stops the writer goroutine and closes the database. Calls
// after the first return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Values put from here on are dropped: the final flush is the last.
		s.lastSeen.close()
		s.tokenUse.close()
		s.sessionUse.close()

		close(s.done)
		<-s.writerDone

		var errs []error
		if s.flushErr != nil {
			errs = append(errs, fmt.Errorf("close store %s: %w", s.dir, s.flushErr))
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store %s: %w", s.dir, err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// writeLoop is the writer goroutine: it flushes the batched writes every
// tick, at a Backup's request and when Close stops it, and runs the hourly
// pruning passes. A failed periodic flush leaves its entries marked, so
// the next tick (or Close) retries them.
func (s *Store) writeLoop(every time.Duration) {
	defer close(s.writerDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			// Passes first: the flush then writes what they audited.
			_ = s.pruneSessions()
			_ = s.pruneTokens()
			_ = s.flushBatches()
		case <-s.audit.full:
			_ = s.flushAudit()
		case reply := <-s.flushNow:
			reply <- s.flushBatches()
		case <-s.done:
			s.flushErr = s.flushBatches()
			return
		}
	}
}

// flushBatches writes every batched write: the three write-behinds and
// the audit queue, each in its own transaction, so one failing kind does
// not hold back the others.
func (s *Store) flushBatches() error {
	return errors.Join(s.lastSeen.flush(), s.tokenUse.flush(), s.sessionUse.flush(), s.flushAudit())
}

// usersChanged drops the password and token caches. Call it after every
// write that changes a user record has committed (a token's credential
// carries its user's role and groups).
func (s *Store) usersChanged() {
	s.creds.invalidate()
	s.tokens.invalidate()
}

// tokensChanged drops the token cache. Call it after every write that
// deletes or changes a token record, other than its last use, has
// committed. TestEveryCachedRecordWriterDropsItsCache finds writers that
// call none of these.
func (s *Store) tokensChanged() {
	s.tokens.invalidate()
}

// devicesChanged drops the device cache. Call it after every write that
// changes a device record, other than its last-seen time, has committed.
func (s *Store) devicesChanged() {
	s.devices.invalidate()
}

// getRecord reads and decodes the JSON record under key in bucket, inside
// tx. It returns ErrNotFound itself (unwrapped) when there is none; what is
// the name of the record's kind in the decoding error.
func getRecord[T any](tx *bolt.Tx, bucket []byte, key, what string) (T, error) {
	var rec T
	v := tx.Bucket(bucket).Get([]byte(key))
	if v == nil {
		return rec, ErrNotFound
	}
	// json.Unmarshal copies out of v, which is only valid inside tx.
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, fmt.Errorf("decode %s record: %w", what, err)
	}
	return rec, nil
}

// deleteUserRecords deletes, inside tx, the records of bucket whose JSON
// "user" field is user (tokens, sessions), and returns their keys; what
// names the kind in errors.
func deleteUserRecords(tx *bolt.Tx, bucket []byte, user, what string) ([]string, error) {
	b := tx.Bucket(bucket)
	var keys []string
	err := b.ForEach(func(k, v []byte) error {
		var r struct {
			User string `json:"user"`
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode %s %s: %w", what, k, err)
		}
		if r.User == user {
			keys = append(keys, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// bbolt forbids changing a bucket while ForEach walks it.
	for _, k := range keys {
		if err := b.Delete([]byte(k)); err != nil {
			return nil, fmt.Errorf("delete %s %s: %w", what, k, err)
		}
	}
	return keys, nil
}
