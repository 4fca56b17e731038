package store

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// testClock is a settable clock safe to read from the writer goroutine.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newClockedStore is newTestStore with s.now driven by the returned clock.
// The writer goroutine reads s.now only after a signal sent by Audit or on
// Close, both after this assignment.
func newClockedStore(t *testing.T) (*Store, *testClock) {
	t.Helper()
	s := newTestStore(t)
	clk := &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s.now = clk.Now
	return s, clk
}

func auditEvents(t *testing.T, s *Store, f AuditFilter) []AuditEvent {
	t.Helper()
	got, err := s.AuditEvents(f)
	if err != nil {
		t.Fatalf("AuditEvents(%+v): %v", f, err)
	}
	return got
}

// rawAuditCount counts the entries in the bucket without flushing.
func rawAuditCount(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketAudit).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAuditEventRoundTripsAllFields(t *testing.T) {
	s, clk := newClockedStore(t)
	want := AuditEvent{
		Time:      clk.Now().Add(-time.Hour + 7), // nanoseconds survive
		Kind:      AuditStream,
		OK:        true,
		Actor:     "local",
		User:      "alice",
		Device:    "pump-7",
		Port:      8080,
		Client:    "203.0.113.9",
		Token:     "tok_abc",
		Group:     "plant-a",
		Reason:    "closed by client",
		BytesUp:   1 << 40,
		BytesDown: 12345,
		Duration:  90 * time.Second,
	}
	s.Audit(want)
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("got %d events, want 1", len(got))
	}
	if got[0].Seq == 0 {
		t.Error("Seq not assigned")
	}
	if !got[0].Time.Equal(want.Time) {
		t.Errorf("Time = %v, want %v", got[0].Time, want.Time)
	}
	want.Seq, want.Time = got[0].Seq, got[0].Time
	if got[0] != want {
		t.Errorf("got  %+v\nwant %+v", got[0], want)
	}
}

func TestAuditSetsTimeWhenZero(t *testing.T) {
	s, clk := newClockedStore(t)
	s.Audit(AuditEvent{Kind: AuditLogin})
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 1 || !got[0].Time.Equal(clk.Now()) {
		t.Fatalf("got %+v, want one event at %v", got, clk.Now())
	}
}

func TestAuditEventsOldestFirstWithIncreasingSeq(t *testing.T) {
	s, clk := newClockedStore(t)
	for i := range 300 {
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: fmt.Sprint(i)})
		clk.Add(time.Second)
		if i == 100 {
			auditEvents(t, s, AuditFilter{}) // a flush in the middle
		}
	}
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 300 {
		t.Fatalf("got %d events, want 300", len(got))
	}
	for i, e := range got {
		if e.Reason != fmt.Sprint(i) {
			t.Fatalf("event %d has reason %q, want %d", i, e.Reason, i)
		}
		if i > 0 && (e.Seq <= got[i-1].Seq || e.Time.Before(got[i-1].Time)) {
			t.Fatalf("event %d (seq %d, %v) not after event %d (seq %d, %v)", i, e.Seq, e.Time, i-1, got[i-1].Seq, got[i-1].Time)
		}
	}
}

func TestAuditEventsFilters(t *testing.T) {
	s, clk := newClockedStore(t)
	start := clk.Now()
	// One event a minute, reasons "0".."5".
	for i, e := range []AuditEvent{
		{Kind: AuditLogin, User: "alice"},
		{Kind: AuditDeviceAdd, Actor: "local", Device: "pump-1"},
		{Kind: AuditStream, User: "Alice", Device: "pump-1", Port: 22},
		{Kind: AuditLogin, User: "bob"},
		{Kind: AuditDeviceRm, Actor: "local", Device: "pump-2"},
		{Kind: AuditStream, User: "bob", Device: "pump-2", Port: 80},
	} {
		e.Reason = fmt.Sprint(i)
		s.Audit(e)
		clk.Add(time.Minute)
	}
	tests := []struct {
		name string
		f    AuditFilter
		want string // reasons, oldest first
	}{
		{"all", AuditFilter{}, "012345"},
		{"since inclusive", AuditFilter{Since: start.Add(3 * time.Minute)}, "345"},
		{"since between", AuditFilter{Since: start.Add(150 * time.Second)}, "345"},
		{"since after all", AuditFilter{Since: start.Add(time.Hour)}, ""},
		{"user ignores case", AuditFilter{User: "alice"}, "02"},
		{"user", AuditFilter{User: "bob"}, "35"},
		{"device", AuditFilter{Device: "pump-1"}, "12"},
		{"kind exact", AuditFilter{Kind: AuditLogin}, "03"},
		{"kind exact is not a prefix", AuditFilter{Kind: "device"}, ""},
		{"kind prefix", AuditFilter{Kind: "device."}, "14"},
		{"kind prefix without matches", AuditFilter{Kind: "auth."}, ""},
		{"limit keeps newest", AuditFilter{Limit: 2}, "45"},
		{"limit after filter", AuditFilter{User: "bob", Limit: 1}, "5"},
		{"limit above count", AuditFilter{Limit: 100}, "012345"},
		{"combined", AuditFilter{Since: start.Add(time.Minute), User: "alice", Kind: AuditStream}, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			for _, e := range auditEvents(t, s, tt.f) {
				got.WriteString(e.Reason)
			}
			if got.String() != tt.want {
				t.Errorf("reasons %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func TestAuditPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.Audit(AuditEvent{Kind: AuditUserAdd, User: "alice", OK: true})
	s.Audit(AuditEvent{Kind: AuditTokenCreate, User: "alice", Token: "t1", OK: true})
	// Not read back before Close: Close must write the queue.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Audit(AuditEvent{Kind: AuditTokenRevoke, User: "alice", Token: "t1", OK: true})
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 3 {
		t.Fatalf("got %d events after reopen, want 3: %+v", len(got), got)
	}
	for i, kind := range []string{AuditUserAdd, AuditTokenCreate, AuditTokenRevoke} {
		if got[i].Kind != kind {
			t.Errorf("event %d kind %q, want %q", i, got[i].Kind, kind)
		}
	}
	if got[2].Seq <= got[1].Seq {
		t.Errorf("seq after reopen %d, want above %d", got[2].Seq, got[1].Seq)
	}
}

func TestAuditPrunesPastRetentionHourly(t *testing.T) {
	s, clk := newClockedStore(t)
	now := clk.Now()
	day := 24 * time.Hour
	for _, age := range []time.Duration{100 * day, 91 * day, 89 * day, 0} {
		s.Audit(AuditEvent{Kind: AuditLogin, Time: now.Add(-age), Reason: fmt.Sprint(int(age / day))})
	}
	// The first flush after Open prunes with the default 90 days.
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 2 || got[0].Reason != "89" || got[1].Reason != "0" {
		t.Fatalf("after first flush got %+v, want the 89- and 0-day-old events", got)
	}

	// A shorter retention applies at the next hourly pass, not before.
	s.SetAuditRetention(30 * day)
	clk.Add(59 * time.Minute)
	if got := auditEvents(t, s, AuditFilter{}); len(got) != 2 {
		t.Fatalf("pruned %d events within the hour", 2-len(got))
	}
	clk.Add(time.Minute)
	got = auditEvents(t, s, AuditFilter{})
	if len(got) != 1 || got[0].Reason != "0" {
		t.Fatalf("after an hour got %+v, want only the newest event", got)
	}
	if n := rawAuditCount(t, s); n != 1 {
		t.Errorf("bucket holds %d entries, want 1", n)
	}
}

func TestAuditRetentionZeroKeepsEverything(t *testing.T) {
	s, clk := newClockedStore(t)
	s.SetAuditRetention(0)
	s.Audit(AuditEvent{Kind: AuditLogin, Time: clk.Now().Add(-10 * 365 * 24 * time.Hour)})
	if got := auditEvents(t, s, AuditFilter{}); len(got) != 1 {
		t.Fatalf("got %d events, want the old one kept", len(got))
	}
}

func TestAuditPrunesBacklogLargerThanOneChunk(t *testing.T) {
	s, clk := newClockedStore(t)
	s.SetAuditRetention(24 * time.Hour)
	old := clk.Now().Add(-48 * time.Hour)
	// Hold the writer (Audit asks it to flush early) until all is queued,
	// so that no pass prunes a backlog still being written.
	s.audit.flushMu.Lock()
	for range 2*auditPruneChunk + 1 {
		s.Audit(AuditEvent{Kind: AuditLogin, Time: old})
	}
	for range 3 {
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: "new"})
	}
	s.audit.flushMu.Unlock()
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 3 {
		t.Fatalf("got %d events, want the 3 new ones", len(got))
	}
	for _, e := range got {
		if e.Reason != "new" {
			t.Fatalf("old event left: %+v", e)
		}
	}
}

func TestAuditPruneStopsAtFirstEventInsideRetention(t *testing.T) {
	s, clk := newClockedStore(t)
	s.SetAuditRetention(time.Hour)
	now := clk.Now()
	// Keys are taken to be in time order: an old event behind a new one
	// stays until the new one is pruned.
	for _, age := range []time.Duration{2 * time.Hour, 0, 3 * time.Hour} {
		s.Audit(AuditEvent{Kind: AuditLogin, Time: now.Add(-age), Reason: age.String()})
	}
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 2 || got[0].Reason != "0s" || got[1].Reason != "3h0m0s" {
		t.Fatalf("got %+v, want the 0s and 3h events", got)
	}
}

// TestAuditFullQueueDropsWithoutBlockingAndRecordsCount holds the writer
// inside a flush, as a stalled disk would, and overfills the queue.
func TestAuditFullQueueDropsWithoutBlockingAndRecordsCount(t *testing.T) {
	s := newTestStore(t)
	s.audit.flushMu.Lock()
	locked := true
	defer func() {
		if locked {
			s.audit.flushMu.Unlock()
		}
	}()

	for i := range auditQueueMax {
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: fmt.Sprint(i)})
	}
	const extra = 1000
	start := time.Now()
	for range extra {
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: "overflow"})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d Audit calls on a full queue took %v", extra, d)
	}
	s.audit.mu.Lock()
	queued, dropped := len(s.audit.queue), s.audit.dropped
	s.audit.mu.Unlock()
	if queued != auditQueueMax || dropped != extra {
		t.Fatalf("queue %d, dropped %d; want %d and %d", queued, dropped, auditQueueMax, extra)
	}

	locked = false
	s.audit.flushMu.Unlock()
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != auditQueueMax+1 {
		t.Fatalf("got %d events, want %d kept plus one drop note", len(got), auditQueueMax+1)
	}
	if got[0].Reason != "0" || got[auditQueueMax-1].Reason != fmt.Sprint(auditQueueMax-1) {
		t.Errorf("kept events are not the first ones queued")
	}
	last := got[auditQueueMax]
	if last.Kind != AuditDropped || last.OK || !strings.HasPrefix(last.Reason, fmt.Sprintf("%d events dropped", extra)) {
		t.Errorf("last event %+v, want %s with the count %d", last, AuditDropped, extra)
	}

	// The count is reported once.
	s.Audit(AuditEvent{Kind: AuditLogin})
	if got := auditEvents(t, s, AuditFilter{Kind: AuditDropped}); len(got) != 1 {
		t.Errorf("%d drop notes, want 1", len(got))
	}
}

func TestAuditManyQueuedFlushesBeforeTick(t *testing.T) {
	s := newTestStore(t) // ticks hourly
	for range auditFlushSoon {
		s.Audit(AuditEvent{Kind: AuditLogin})
	}
	deadline := time.Now().Add(5 * time.Second)
	for rawAuditCount(t, s) < auditFlushSoon {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events written after 5s", rawAuditCount(t, s), auditFlushSoon)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAuditClipsLongStrings(t *testing.T) {
	s := newTestStore(t)
	huge := strings.Repeat("é", 1<<19) // 1 MiB of two-byte runes
	s.Audit(AuditEvent{Kind: AuditLogin, User: huge, Client: huge, Reason: huge})
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("got %d events", len(got))
	}
	for name, v := range map[string]struct {
		s   string
		max int
	}{"User": {got[0].User, auditFieldMax}, "Client": {got[0].Client, auditFieldMax}, "Reason": {got[0].Reason, auditReasonMax}} {
		if len(v.s) > v.max || len(v.s) < v.max-8 || !utf8.ValidString(v.s) || !strings.HasSuffix(v.s, "…") {
			t.Errorf("%s: %d bytes (valid UTF-8 %v), want at most %d ending in …", name, len(v.s), utf8.ValidString(v.s), v.max)
		}
	}
}

func TestAuditConcurrentUse(t *testing.T) {
	s := newTestStore(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				s.Audit(AuditEvent{Kind: AuditStream, Device: fmt.Sprint("d", g), Port: uint16(i)})
				if i%100 == 0 {
					if _, err := s.AuditEvents(AuditFilter{Limit: 10}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	got := auditEvents(t, s, AuditFilter{})
	if len(got) != 8*500 {
		t.Fatalf("got %d events, want %d", len(got), 8*500)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("seq %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	// Per goroutine, events are in the order they were queued.
	next := map[string]uint16{}
	for _, e := range got {
		if e.Port != next[e.Device] {
			t.Fatalf("device %s: port %d, want %d", e.Device, e.Port, next[e.Device])
		}
		next[e.Device]++
	}
}

func TestAuditKeysAreBigEndianSeq(t *testing.T) {
	s := newTestStore(t)
	s.Audit(AuditEvent{Kind: AuditLogin})
	s.Audit(AuditEvent{Kind: AuditLogin})
	got := auditEvents(t, s, AuditFilter{})
	var keys []uint64
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, _ []byte) error {
			if len(k) != 8 {
				t.Errorf("key %x is not 8 bytes", k)
				return nil
			}
			keys = append(keys, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if len(keys) != 2 || keys[0] != got[0].Seq || keys[1] != got[1].Seq {
		t.Errorf("keys %v, events' seq %d %d", keys, got[0].Seq, got[1].Seq)
	}
}

// benchEvent is a typical stream event.
var benchEvent = AuditEvent{
	Kind: AuditStream, OK: true, User: "alice", Device: "pump-7", Port: 22,
	Client: "203.0.113.9", BytesUp: 4096, BytesDown: 1 << 20, Duration: time.Minute,
}

// BenchmarkAudit measures queueing one event: the cost on the request path.
func BenchmarkAudit(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Keep the writer out of it; empty the queue before it fills.
	s.audit.flushMu.Lock()
	defer s.audit.flushMu.Unlock()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if i%auditQueueMax == auditQueueMax-1 {
			b.StopTimer()
			s.audit.mu.Lock()
			clear(s.audit.queue)
			s.audit.queue = s.audit.queue[:0]
			s.audit.mu.Unlock()
			b.StartTimer()
		}
		s.Audit(benchEvent)
	}
}

// BenchmarkAuditFlush1000 measures writing a batch of 1,000 events: one
// bbolt transaction, including its fsync.
func BenchmarkAuditFlush1000(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.SetAuditRetention(0)
	if err := s.flushAudit(); err != nil { // the first flush's pruning pass
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s.audit.mu.Lock()
		for range 1000 {
			s.audit.queue = append(s.audit.queue, benchEvent)
		}
		s.audit.mu.Unlock()
		b.StartTimer()
		if err := s.writeAudit(); err != nil {
			b.Fatal(err)
		}
	}
}
