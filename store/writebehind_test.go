package store

import (
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// held returns how many keys w holds, written or not.
func held[K comparable, V any](w *writeBehind[K, V]) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.newest)
}

// holds reports whether w holds a value for k, written or not.
func holds[K comparable, V any](w *writeBehind[K, V], k K) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.newest[k]
	return ok
}

var bucketTest = []byte("test")

// testWriteBehind is a write-behind of ints that apply stores as decimal
// strings in bucketTest, with the hooks a test needs around apply.
type testWriteBehind struct {
	*writeBehind[string, int]
	db     *bolt.DB
	txIDs  map[int]int           // write transaction id -> entries applied in it
	fail   error                 // returned by apply while set
	drop   bool                  // apply's answer
	during func(k string, v int) // called by apply, inside the transaction
}

func newTestWriteBehind(t *testing.T) *testWriteBehind {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "wb.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketTest)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tw := &testWriteBehind{db: db, txIDs: make(map[int]int)}
	greater := func(a, b int) bool { return a > b }
	tw.writeBehind = newWriteBehind(db, "test values", greater, func(tx *bolt.Tx, k string, v int) (bool, error) {
		tw.txIDs[tx.ID()]++
		if tw.during != nil {
			tw.during(k, v)
		}
		if tw.fail != nil {
			return false, tw.fail
		}
		return tw.drop, tx.Bucket(bucketTest).Put([]byte(k), []byte(strconv.Itoa(v)))
	})
	return tw
}

// stored returns the value stored under k, or -1 if there is none.
func (tw *testWriteBehind) stored(t *testing.T, k string) int {
	t.Helper()
	n := -1
	err := tw.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketTest).Get([]byte(k)); v != nil {
			var err error
			n, err = strconv.Atoi(string(v))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (tw *testWriteBehind) mustFlush(t *testing.T) {
	t.Helper()
	if err := tw.flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestWriteBehindKeepsTheNewestValuePerKey(t *testing.T) {
	tw := newTestWriteBehind(t)
	if !tw.put("a", 2) {
		t.Fatal("put of a first value refused")
	}
	if tw.put("a", 1) || tw.put("a", 2) {
		t.Error("put of an older or equal value accepted")
	}
	if got := tw.newestOf("a", 0); got != 2 {
		t.Errorf("newestOf before the flush = %d, want 2", got)
	}
	if got := tw.newestOf("a", 5); got != 5 {
		t.Errorf("newestOf with a newer stored value = %d, want the stored 5", got)
	}
	if got := tw.newestOf("b", 7); got != 7 {
		t.Errorf("newestOf of a key never put = %d, want the stored 7", got)
	}
	tw.mustFlush(t)
	if got := tw.stored(t, "a"); got != 2 {
		t.Errorf("stored = %d, want 2", got)
	}
}

func TestWriteBehindFlushWritesAllPendingEntriesInOneTransaction(t *testing.T) {
	tw := newTestWriteBehind(t)
	for i := range 100 {
		tw.put("k"+strconv.Itoa(i), i)
	}
	tw.mustFlush(t)
	if len(tw.txIDs) != 1 {
		t.Errorf("flush used %d transactions, want 1", len(tw.txIDs))
	}
	for _, n := range tw.txIDs {
		if n != 100 {
			t.Errorf("flush applied %d entries, want 100", n)
		}
	}
	for i := range 100 {
		if got := tw.stored(t, "k"+strconv.Itoa(i)); got != i {
			t.Fatalf("k%d stored = %d, want %d", i, got, i)
		}
	}
	clear(tw.txIDs)
	tw.mustFlush(t)
	if len(tw.txIDs) != 0 {
		t.Error("a flush with nothing marked opened a transaction")
	}
}

func TestWriteBehindNotedValueIsReadButWrittenOnlyWithAMark(t *testing.T) {
	tw := newTestWriteBehind(t)
	tw.note("a", 1)
	if got := tw.newestOf("a", 0); got != 1 {
		t.Errorf("newestOf a noted value = %d, want 1", got)
	}
	tw.mustFlush(t)
	if got := tw.stored(t, "a"); got != -1 {
		t.Errorf("a noted value was written (%d)", got)
	}
	// A mark made earlier stays: the flush writes the newest value.
	tw.put("a", 2)
	tw.note("a", 3)
	tw.mustFlush(t)
	if got := tw.stored(t, "a"); got != 3 {
		t.Errorf("stored = %d, want the noted 3 behind the mark", got)
	}
}

func TestWriteBehindFailedFlushIsRetriedByTheNext(t *testing.T) {
	tw := newTestWriteBehind(t)
	tw.put("a", 1)
	tw.put("b", 1)
	tw.fail = errors.New("disk full")
	if err := tw.flush(); !errors.Is(err, tw.fail) {
		t.Fatalf("flush = %v, want the apply error", err)
	}
	if got := tw.stored(t, "a"); got != -1 {
		t.Errorf("a failed flush committed a = %d", got)
	}
	tw.fail = nil
	tw.put("b", 2) // newer while the batch was out: the retry writes it
	tw.mustFlush(t)
	if a, b := tw.stored(t, "a"), tw.stored(t, "b"); a != 1 || b != 2 {
		t.Errorf("stored after the retry a=%d b=%d, want 1 and 2", a, b)
	}
}

func TestWriteBehindEntryLeavesMemoryWhenApplyLetsGoUnlessANewerValueCame(t *testing.T) {
	tw := newTestWriteBehind(t)
	tw.drop = true
	tw.put("a", 1)
	tw.put("b", 1)
	tw.during = func(k string, v int) {
		if k == "b" {
			// A put from another goroutine while the batch is being
			// written (not under the lock: flush does not hold it).
			tw.put("b", 2)
		}
	}
	tw.mustFlush(t)
	tw.during = nil
	if holds(tw.writeBehind, "a") {
		t.Error("a written entry apply let go is still held")
	}
	if got := tw.newestOf("b", 0); got != 2 {
		t.Fatalf("newer value of b = %d, want 2 kept", got)
	}
	tw.mustFlush(t)
	if got := tw.stored(t, "b"); got != 2 {
		t.Errorf("stored b = %d, want the newer 2 written by the next flush", got)
	}

	tw.drop = false
	tw.put("c", 1)
	tw.mustFlush(t)
	if got := tw.newestOf("c", 0); got != 1 {
		t.Errorf("entry apply kept = %d, want 1 still held", got)
	}
}

func TestWriteBehindForgetAndDropIfDropPendingValues(t *testing.T) {
	tw := newTestWriteBehind(t)
	tw.put("a", 1)
	tw.put("b", 5)
	tw.put("c", 9)
	tw.forget("a")
	tw.dropIf(func(_ string, v int) bool { return v < 9 })
	tw.mustFlush(t)
	for _, k := range []string{"a", "b"} {
		if got := tw.stored(t, k); got != -1 {
			t.Errorf("%s stored = %d after it was dropped", k, got)
		}
	}
	if got := tw.stored(t, "c"); got != 9 {
		t.Errorf("c stored = %d, want 9", got)
	}
	// A forgotten key starts afresh: an older value is accepted.
	tw.forget("c")
	if !tw.put("c", 1) {
		t.Error("put after forget refused an older value")
	}
}

func TestWriteBehindFlushAfterCloseWritesWhatCameBeforeAndDropsTheRest(t *testing.T) {
	tw := newTestWriteBehind(t)
	tw.put("a", 1)
	tw.close()
	if tw.put("b", 1) || tw.note("c", 1) || tw.put("a", 2) {
		t.Error("a value was accepted after close")
	}
	tw.mustFlush(t)
	if a, b := tw.stored(t, "a"), tw.stored(t, "b"); a != 1 || b != -1 {
		t.Errorf("stored a=%d b=%d, want 1 and none", a, b)
	}
}

// Close is what runs the final flush of every write-behind: a device
// touch, a token use and a session end made before it all reach the disk.
func TestStoreCloseFlushesEveryWriteBehind(t *testing.T) {
	s, err := open(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	token, tok := mustCreateToken(t, s, Token{User: "alice", Name: "laptop"})
	_, sess, err := s.CreateSession("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	seen := s.now().UTC()
	s.TouchDevice("pump-17", seen)
	if _, err := s.AuthenticateToken(token); err != nil {
		t.Fatal(err)
	}
	s.endSessionLater(sess.ID, sess.LastSeen)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.TouchDevice("pump-17", seen.Add(time.Hour)) // after Close: dropped, no panic

	s2, err := open(s.Dir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := rawLastSeen(t, s2, "pump-17"); !got.Equal(seen) {
		t.Errorf("device LastSeen after reopen = %v, want %v", got, seen)
	}
	if got := rawToken(t, s2, tok.ID).LastUsed; got.IsZero() {
		t.Error("token use not written by Close")
	}
	if _, ok := rawSession(t, s2, sess.ID); ok {
		t.Error("ended session not deleted by Close")
	}
}
