package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The audit log is the bbolt bucket "audit": append-only, keyed by an
// 8-byte big-endian sequence number, values JSON AuditEvent. Audit does not
// wait for the disk: events are queued and written in batches by the
// store's writer goroutine (every second, sooner when many are queued, and
// on Close). Entries older than the retention are pruned.
//
// Since sequence numbers grow with each write and events are queued as they
// happen, the keys are (nearly) in time order: pruning deletes from the
// front and stops at the first entry inside the retention, and a query with
// Since reads from the back and stops at the first older entry. A query
// with Before (a page of an older part of the log) seeks to its key first.

// Audit event kinds.
const (
	AuditLogin       = "login"       // a user authenticated (or failed to): proxy, API, web
	AuditLockout     = "auth.locked" // failures locked a user or address out
	AuditAgent       = "agent.login" // a device's agent authenticated (or failed to)
	AuditStream      = "stream"      // a CONNECT stream closed
	AuditStreamCut   = "stream.cut"  // an admin cut an open stream
	AuditRequest     = "http"        // an absolute-form request finished
	AuditTokenCreate = "token.create"
	AuditTokenRevoke = "token.revoke"
	AuditTokenPrune  = "token.pruned" // the writer deleted long-expired tokens; Reason has the count
	AuditDeviceAdd   = "device.add"
	AuditDeviceRm    = "device.rm"
	AuditDeviceSet   = "device.set"
	AuditRotate      = "device.rotate"
	AuditEnable      = "device.enable"
	AuditDisable     = "device.disable"
	AuditEnroll      = "device.enroll"
	AuditHostKey     = "device.hostkey" // an SSH host key trusted on first use, refused as changed, or reset
	AuditEnrollKey   = "enroll.create"
	AuditEnrollRm    = "enroll.rm"
	AuditGroupAdd    = "group.add"
	AuditGroupRm     = "group.rm"
	AuditGroupSet    = "group.set"
	AuditUserAdd     = "user.add"
	AuditUserRm      = "user.rm"
	AuditUserSet     = "user.set"
	AuditTOTP        = "user.totp"
	AuditBackup      = "backup"        // the database was copied; Reason has the file
	AuditDropped     = "audit.dropped" // events were lost; Reason says how many and why
)

// DefaultAuditRetention is how long audit events are kept unless
// SetAuditRetention says otherwise.
const DefaultAuditRetention = 90 * 24 * time.Hour

const (
	// auditQueueMax bounds the events waiting to be written (about 200
	// bytes each, plus their strings, which Audit clips). Beyond it Audit
	// drops events and counts them rather than wait or grow: a disk that
	// stalls must not stall logins, nor a flood of failures exhaust memory.
	auditQueueMax = 65536

	// auditFlushSoon is the queue length at which Audit asks the writer to
	// flush before its next tick.
	auditFlushSoon = 512

	// auditSpareMax is the largest written batch kept for reuse as the next
	// queue; a burst's large array is left to the collector instead.
	auditSpareMax = 4096

	// auditPruneEvery is how often old entries are looked for; the first
	// flush after Open looks too.
	auditPruneEvery = time.Hour

	// auditPruneChunk is how many entries one pruning transaction deletes,
	// so a large backlog is removed in steps that let other writers in.
	auditPruneChunk = 10000

	// auditFieldMax and auditReasonMax clip the strings of a queued event.
	// Names the store accepts are far shorter; a failed login may carry
	// whatever a client sent, and the queue must stay bounded in bytes.
	auditFieldMax  = 256
	auditReasonMax = 1024
)

// AuditEvent is one audit log entry. Zero fields are left out of the JSON.
type AuditEvent struct {
	Seq       uint64        `json:"seq"`  // assigned when written
	Time      time.Time     `json:"time"` // set by Audit when zero
	Kind      string        `json:"kind"`
	OK        bool          `json:"ok"`
	Actor     string        `json:"actor,omitempty"` // who made an admin change, e.g. "local"
	User      string        `json:"user,omitempty"`
	Device    string        `json:"device,omitempty"`
	Port      uint16        `json:"port,omitempty"`
	Client    string        `json:"client,omitempty"` // client address
	Token     string        `json:"token,omitempty"`  // token id
	Group     string        `json:"group,omitempty"`
	Reason    string        `json:"reason,omitempty"` // why it failed, or what changed
	BytesUp   int64         `json:"bytes_up,omitempty"`
	BytesDown int64         `json:"bytes_down,omitempty"`
	Duration  time.Duration `json:"duration,omitempty"`
}

// Audit queues e for the log. It never blocks on the disk. When the queue is
// full (the disk is slow or failing), e is dropped and counted, and the next
// write records an AuditDropped event with the count. Strings longer than a
// few hundred bytes are clipped.
func (s *Store) Audit(e AuditEvent) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	clipAuditEvent(&e)

	a := &s.audit
	a.mu.Lock()
	if len(a.queue) >= auditQueueMax {
		a.dropped++
		a.mu.Unlock()
		return
	}
	a.queue = append(a.queue, e)
	n := len(a.queue)
	a.mu.Unlock()

	if n >= auditFlushSoon {
		select {
		case a.full <- struct{}{}:
		default: // a flush is already requested
		}
	}
}

// AuditFilter selects audit events; zero fields select all.
//
// To page newest first, ask for Limit events, then pass the smallest Seq of
// the page as Before for the next one, until a page comes back short. Seq
// rather than Time is the cursor: it is unique and is the key, so the next
// page starts with a Seek and events written meanwhile (newer Seqs) do not
// shift it.
type AuditFilter struct {
	Since  time.Time // only events at or after it
	Until  time.Time // only events before it
	Before uint64    // only events with Seq < Before; 0: no bound
	User   string
	Device string
	Kind   string // exact, or a prefix ending in "." ("device.")
	Limit  int    // the newest Limit matching events; 0 for all
	// MaxScan bounds how many events the scan reads, newest first, 0 for
	// no bound: a filter few events match (one device's, among a fleet's)
	// reads the whole log otherwise. With it the answer is the matches
	// among the newest MaxScan events.
	MaxScan int
}

// match reports whether e passes the filter's user, device and kind tests.
// Since, Until, Before and Limit are applied by the scan.
func (f *AuditFilter) match(e *AuditEvent) bool {
	// User names are case-insensitive in the store; device ids are lower
	// case, so folding only forgives the query.
	if f.User != "" && !strings.EqualFold(e.User, f.User) {
		return false
	}
	if f.Device != "" && !strings.EqualFold(e.Device, f.Device) {
		return false
	}
	if f.Kind != "" {
		if strings.HasSuffix(f.Kind, ".") {
			return strings.HasPrefix(e.Kind, f.Kind)
		}
		return e.Kind == f.Kind
	}
	return true
}

// AuditEvents writes queued events, then returns the matching ones, oldest
// first.
func (s *Store) AuditEvents(f AuditFilter) ([]AuditEvent, error) {
	if err := s.flushAudit(); err != nil {
		return nil, fmt.Errorf("audit events: %w", err)
	}
	var out []AuditEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		// Newest first, so Since and Limit end the scan early, from the
		// newest event before Before: events at or after it are not read.
		// Until cannot start the scan (times are only nearly in key
		// order), so newer events are read and passed over.
		k, v := c.Last()
		if f.Before > 0 {
			var from [8]byte
			binary.BigEndian.PutUint64(from[:], f.Before)
			if k, v = c.Seek(from[:]); k == nil {
				k, v = c.Last() // every key is below Before
			} else {
				k, v = c.Prev()
			}
		}
		for scanned := 0; k != nil; k, v = c.Prev() {
			if scanned++; f.MaxScan > 0 && scanned > f.MaxScan {
				break
			}
			var e AuditEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit event %x: %w", k, err)
			}
			if len(k) == 8 {
				e.Seq = binary.BigEndian.Uint64(k)
			}
			if !f.Since.IsZero() && e.Time.Before(f.Since) {
				break
			}
			if f.Before > 0 && e.Seq >= f.Before {
				continue // a key not written by writeAudit
			}
			if !f.Until.IsZero() && !e.Time.Before(f.Until) {
				continue
			}
			if !f.match(&e) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit events: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// SetAuditRetention sets how long events are kept (default 90 days); older
// ones are pruned at the next hourly pass. A retention of zero or less keeps
// events forever.
func (s *Store) SetAuditRetention(d time.Duration) {
	s.audit.mu.Lock()
	s.audit.retention = d
	s.audit.mu.Unlock()
}

// auditLog is the queue of events not yet written.
type auditLog struct {
	mu        sync.Mutex
	queue     []AuditEvent  // events not yet written, oldest first; at most auditQueueMax
	spare     []AuditEvent  // an emptied batch kept to become the next queue
	dropped   uint64        // events refused since the last write
	retention time.Duration // how long events are kept; <= 0 forever
	full      chan struct{} // signalled when the queue should be written early; may be nil

	// flushMu is held from taking a batch off the queue until it is
	// committed (or put back), so two flushers — the writer goroutine and
	// AuditEvents — cannot commit batches out of queue order.
	flushMu sync.Mutex

	// pruneMu is held by a pruning pass and its check for being due. It is
	// separate from flushMu so that writes go on while a large backlog is
	// pruned.
	pruneMu   sync.Mutex
	lastPrune time.Time // when the last pass finished; zero before the first
}

// init prepares the log of a newly opened store.
func (a *auditLog) init() {
	a.full = make(chan struct{}, 1)
	a.retention = DefaultAuditRetention
}

// flushAudit writes the queued events and, when a pass is due, prunes
// events older than the retention.
func (s *Store) flushAudit() error {
	return errors.Join(s.writeAudit(), s.pruneAudit())
}

// writeAudit writes the queued events (and a note of any dropped ones) in
// one transaction. If the transaction fails the events go back to the front
// of the queue, to be tried again at the next flush.
func (s *Store) writeAudit() error {
	a := &s.audit
	a.flushMu.Lock()
	defer a.flushMu.Unlock()

	a.mu.Lock()
	batch, dropped := a.queue, a.dropped
	if len(batch) == 0 && dropped == 0 {
		a.mu.Unlock()
		return nil
	}
	a.queue, a.spare, a.dropped = a.spare, nil, 0
	a.mu.Unlock()

	now := s.now()
	// bbolt wants keys and values to stay valid until the transaction ends;
	// the keys share one array.
	keys := make([]byte, 8*(len(batch)+1))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		// Appends only ever go to the end: fill pages rather than split
		// them in half.
		b.FillPercent = 0.9
		var unencodable uint64
		put := func(e *AuditEvent, key []byte) error {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			e.Seq = seq
			data, err := json.Marshal(e)
			if err != nil {
				// Only a Time outside years 0–9999 fails; one such
				// event must not hold back the rest forever.
				unencodable++
				return nil
			}
			binary.BigEndian.PutUint64(key, seq)
			return b.Put(key, data)
		}
		for i := range batch {
			if err := put(&batch[i], keys[8*i:8*i+8]); err != nil {
				return fmt.Errorf("write audit event: %w", err)
			}
		}
		if dropped > 0 || unencodable > 0 {
			e := AuditEvent{Time: now, Kind: AuditDropped, Reason: droppedReason(dropped, unencodable)}
			if err := put(&e, keys[8*len(batch):]); err != nil {
				return fmt.Errorf("write audit event: %w", err)
			}
		}
		return nil
	})

	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		// Put the batch back in front of what was queued since; if that
		// overflows the queue, the newest events are the ones dropped.
		q := append(batch, a.queue...)
		if len(q) > auditQueueMax {
			dropped += uint64(len(q) - auditQueueMax)
			clear(q[auditQueueMax:])
			q = q[:auditQueueMax]
		}
		a.queue = q
		a.dropped += dropped
		return err
	}
	clear(batch) // release the strings
	if a.spare == nil && cap(batch) <= auditSpareMax {
		a.spare = batch[:0]
	}
	return nil
}

// droppedReason describes the events lost since the last write.
func droppedReason(full, unencodable uint64) string {
	var parts []string
	if full > 0 {
		parts = append(parts, fmt.Sprintf("%d events dropped: audit queue full", full))
	}
	if unencodable > 0 {
		parts = append(parts, fmt.Sprintf("%d events dropped: time cannot be encoded", unencodable))
	}
	return strings.Join(parts, "; ")
}

// pruneAudit deletes events older than the retention, at most once per
// auditPruneEvery, in transactions of at most auditPruneChunk deletions.
func (s *Store) pruneAudit() error {
	a := &s.audit
	a.pruneMu.Lock()
	defer a.pruneMu.Unlock()

	now := s.now()
	if !a.lastPrune.IsZero() && now.Sub(a.lastPrune) < auditPruneEvery {
		return nil
	}
	a.mu.Lock()
	retention := a.retention
	a.mu.Unlock()
	if retention > 0 {
		cutoff := now.Add(-retention)
		err := walkChunks(func(from []byte) ([]byte, error) { return s.pruneAuditChunk(cutoff, from) })
		if err != nil {
			return fmt.Errorf("prune audit log: %w", err)
		}
	}
	a.lastPrune = now
	return nil
}

// pruneAuditChunk deletes up to auditPruneChunk events older than cutoff,
// starting at key from (the first key when nil). It returns the key to
// continue at, or nil when it reached an event inside the retention or the
// end of the log. An entry that cannot be decoded is kept and passed over:
// its age is unknown.
func (s *Store) pruneAuditChunk(cutoff time.Time, from []byte) (next []byte, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
		}
		// Copies of the keys: they are deleted after the scan, and the
		// cursor's slices point into pages the deletions change.
		old := make([]byte, 0, 8*auditPruneChunk)
		for ; k != nil; k, v = c.Next() {
			if len(old) == cap(old) {
				next = slices.Clone(k)
				break
			}
			if len(k) != 8 {
				continue // not written by writeAudit; not ours to delete
			}
			var t struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(v, &t) != nil {
				continue
			}
			if !t.Time.Before(cutoff) {
				break
			}
			old = append(old, k...)
		}
		for i := 0; i < len(old); i += 8 {
			if err := b.Delete(old[i : i+8]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// clipAuditEvent shortens e's strings to the queue's limits.
func clipAuditEvent(e *AuditEvent) {
	e.Kind = clip(e.Kind, auditFieldMax)
	e.Actor = clip(e.Actor, auditFieldMax)
	e.User = clip(e.User, auditFieldMax)
	e.Device = clip(e.Device, auditFieldMax)
	e.Client = clip(e.Client, auditFieldMax)
	e.Token = clip(e.Token, auditFieldMax)
	e.Group = clip(e.Group, auditFieldMax)
	e.Reason = clip(e.Reason, auditReasonMax)
}

// clip returns s cut to at most n bytes at a rune boundary, marked with
// "…". The result does not share memory with a clipped s, so a huge string
// a client sent is not kept alive by the queue.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
