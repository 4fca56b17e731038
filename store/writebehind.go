package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// writeBehind holds small, frequent updates of records — device last-seen
// times, token and session last-use times, session ends — in memory and writes them in
// batches, so the path that makes them (a tunnel, a login, a page load)
// never waits for a bbolt write transaction and a busy record costs one
// write per batch rather than one per use. The store's writer goroutine
// flushes every instance on its tick, before a backup and on Close
// (store.go); each flush writes all pending entries of one kind in one
// transaction through that kind's apply function.
//
// Each key holds only its newest value, written or not, so reads can show
// it before it reaches the disk (newestOf). A value is either marked to be
// written (put) or only remembered for reads (note), for kinds that write
// at most once a minute per record but must still count the uses between.
type writeBehind[K comparable, V any] struct {
	db   *bolt.DB
	what string // names the values in errors, e.g. "token last-use times"

	// after reports whether a is newer than b. Values that are not newer
	// than the one held are ignored, so callers racing with older values
	// cannot move a record back in time.
	after func(a, b V) bool

	// apply writes one pending entry inside tx. It reports whether the
	// entry may leave memory once tx commits (drop): true when the record
	// is gone or the value has served its purpose; false keeps it for
	// reads. An error aborts the whole batch, which is then retried.
	apply func(tx *bolt.Tx, k K, v V) (drop bool, err error)

	// flushMu makes flushes take turns, so a batch is settled (dropped or
	// marked again) before the next is taken; the writer goroutine and
	// tests both flush.
	flushMu sync.Mutex

	mu     sync.Mutex
	newest map[K]V        // newest value per key, written or not
	dirty  map[K]struct{} // keys whose newest value is to be written; a subset of newest's
	closed bool           // set by close: later values are dropped
}

// newWriteBehind returns an empty write-behind for db; see the fields of
// writeBehind for what, after and apply.
func newWriteBehind[K comparable, V any](db *bolt.DB, what string, after func(a, b V) bool, apply func(tx *bolt.Tx, k K, v V) (bool, error)) *writeBehind[K, V] {
	return &writeBehind[K, V]{
		db:     db,
		what:   what,
		after:  after,
		apply:  apply,
		newest: make(map[K]V),
		dirty:  make(map[K]struct{}),
	}
}

// put makes v the newest value of k and marks it for the next flush. It
// returns false, changing nothing, when v is not newer than the value held
// or the write-behind is closed.
func (w *writeBehind[K, V]) put(k K, v V) bool { return w.set(k, v, true) }

// note makes v the newest value of k for reads without marking it to be
// written; a mark already made stays, and the flush then writes v. It
// returns false as put does.
func (w *writeBehind[K, V]) note(k K, v V) bool { return w.set(k, v, false) }

func (w *writeBehind[K, V]) set(k K, v V, write bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if old, ok := w.newest[k]; ok && !w.after(v, old) {
		return false
	}
	w.newest[k] = v
	if write {
		w.dirty[k] = struct{}{}
	}
	return true
}

// newestOf returns the value held for k if it is newer than stored, the
// value just read from the database, and stored otherwise.
func (w *writeBehind[K, V]) newestOf(k K, stored V) V {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.newest[k]; ok && w.after(v, stored) {
		return v
	}
	return stored
}

// forget drops what is held for keys whose records were deleted or
// replaced, written or not: a value of the old record is not the new one's.
func (w *writeBehind[K, V]) forget(keys ...K) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		delete(w.newest, k)
		delete(w.dirty, k)
	}
}

// dropIf forgets every key for which stale returns true, written or not.
// stale runs with the lock held and must not call back into w.
func (w *writeBehind[K, V]) dropIf(stale func(K, V) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, v := range w.newest {
		if stale(k, v) {
			delete(w.newest, k)
			delete(w.dirty, k)
		}
	}
}

// close makes later put and note calls do nothing, so that what the final
// flush (Store.Close) writes is all there will be.
func (w *writeBehind[K, V]) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// flush writes the marked entries in one transaction. The lock is not held
// during it, so put and reads go on meanwhile. On failure the entries still
// held are marked again for the next flush. On success an entry apply let
// go leaves memory unless a newer value came meanwhile.
func (w *writeBehind[K, V]) flush() error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()

	w.mu.Lock()
	if len(w.dirty) == 0 {
		w.mu.Unlock()
		return nil
	}
	batch := make(map[K]V, len(w.dirty))
	for k := range w.dirty {
		batch[k] = w.newest[k]
	}
	clear(w.dirty)
	w.mu.Unlock()

	var drop []K
	err := w.db.Update(func(tx *bolt.Tx) error {
		for k, v := range batch {
			d, err := w.apply(tx, k, v)
			if err != nil {
				return err
			}
			if d {
				drop = append(drop, k)
			}
		}
		return nil
	})

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		for k := range batch {
			if _, ok := w.newest[k]; ok {
				w.dirty[k] = struct{}{}
			}
		}
		return fmt.Errorf("flush %s: %w", w.what, err)
	}
	for _, k := range drop {
		if _, again := w.dirty[k]; again {
			continue
		}
		if v, ok := w.newest[k]; ok && !w.after(v, batch[k]) {
			delete(w.newest, k)
		}
	}
	return nil
}

// rewriteRecord is the common apply step of a write-behind whose values
// each update one JSON record: inside tx it reads the record of kind T
// under key in bucket (what names the kind in errors), lets update change
// it, and writes it back if update says it changed. gone reports a record
// that does not exist, whose entry may leave memory. A record that cannot
// be decoded is passed over without an error: it can neither authenticate
// nor take a time, the reads that meet it report it, and it must not hold
// back the rest of the batch forever.
func rewriteRecord[T any](tx *bolt.Tx, bucket []byte, key, what string, update func(*T) bool) (gone, written bool, err error) {
	rec, err := getRecord[T](tx, bucket, key, what)
	if errors.Is(err, ErrNotFound) {
		return true, false, nil
	}
	if err != nil || !update(&rec) {
		return false, false, nil
	}
	data, err := json.Marshal(&rec)
	if err != nil {
		return false, false, fmt.Errorf("encode %s %q: %w", what, key, err)
	}
	if err := tx.Bucket(bucket).Put([]byte(key), data); err != nil {
		return false, false, fmt.Errorf("write %s %q: %w", what, key, err)
	}
	return false, true, nil
}
