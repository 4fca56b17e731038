// Package store keeps the reflector's persistent records — users and devices —
// in a single bbolt file in the data directory, and checks the credentials
// that guard them: argon2id password hashes for users, SHA-256 hashes of
// high-entropy secrets for devices (argon2id for the secrets devices bring
// along), with a short-lived cache of verified passwords so the proxy does
// not pay for argon2id on every CONNECT, and one of verified adopted device
// secrets so a reconnecting agent does not either. Records
// are JSON values in the buckets "users", "devices" and "meta". Admin changes
// are synchronous bbolt writes; device last-seen times are kept in memory and
// written in batches by one goroutine. A Store is safe for concurrent use.
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

	// flushInterval is how often pending last-seen times are written.
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

	keySchema = []byte("schema")
)

// Store is the reflector's record store. Create it with Open and release it
// with Close.
type Store struct {
	dir   string
	db    *bolt.DB
	creds *credCache
	now   func() time.Time // time.Now; tests replace it before use

	argon      *argonGate   // bounds concurrent argon2id work (argon.go)
	devSecrets *secretCache // adopted device secrets that passed argon2id (argon.go)

	tokenUse   tokenUse   // token last-use times, written by writeLoop (tokens.go)
	sessionUse sessionUse // session last-seen times and ends, written by writeLoop (sessions.go)
	audit      auditLog   // pending audit events, written by writeLoop (audit.go)

	// Last-seen times, written by TouchDevice (any goroutine) and drained by
	// writeLoop. seen holds the newest time known for each device, flushed or
	// not, so reads never go back in time while a flush is in flight; dirty
	// holds the ids whose time has not been written yet.
	seenMu sync.Mutex
	seen   map[string]time.Time
	dirty  map[string]struct{}
	closed bool

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
		creds:      newCredCache(),
		now:        time.Now,
		argon:      newArgonGate(),
		devSecrets: devSecrets,
		seen:       make(map[string]time.Time),
		dirty:      make(map[string]struct{}),
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
	for _, name := range [][]byte{bucketUsers, bucketDevices, bucketMeta, bucketGroups, bucketTokens, bucketEnroll, bucketAudit, bucketSessions} {
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

// Close writes pending last-seen times, stops the writer goroutine and closes
// the database. Calls after the first return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.seenMu.Lock()
		s.closed = true
		s.seenMu.Unlock()

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

// writeLoop is the only writer of last-seen times. A failed periodic flush
// leaves its entries dirty, so the next tick (or Close) retries them.
func (s *Store) writeLoop(every time.Duration) {
	defer close(s.writerDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = s.flushLastSeen()
			_ = s.flushTokenUse()
			_ = s.flushSessionUse()
			_ = s.pruneSessions()
			_ = s.pruneTokens()
			_ = s.flushAudit()
		case <-s.audit.full:
			_ = s.flushAudit()
		case reply := <-s.flushNow:
			reply <- errors.Join(s.flushLastSeen(), s.flushTokenUse(), s.flushSessionUse(), s.flushAudit())
		case <-s.done:
			s.flushErr = errors.Join(s.flushLastSeen(), s.flushTokenUse(), s.flushSessionUse(), s.flushAudit())
			return
		}
	}
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
