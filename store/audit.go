package store

import (
	"sync"
	"time"
)

// The audit log is the bbolt bucket "audit": append-only, keyed by an
// 8-byte big-endian sequence number, values JSON AuditEvent. Audit does not
// wait for the disk: events are queued and written in batches by the
// store's writer goroutine (every second, sooner when many are queued, and
// on Close). Entries older than the retention are pruned.

// Audit event kinds.
const (
	AuditLogin       = "login"        // a user authenticated (or failed to): proxy, API, web
	AuditLockout     = "login.locked" // failures locked a user or address out
	AuditAgent       = "agent.login"  // a device's agent authenticated (or failed to)
	AuditStream      = "stream"       // a CONNECT stream closed
	AuditRequest     = "http"         // an absolute-form request finished
	AuditTokenCreate = "token.create"
	AuditTokenRevoke = "token.revoke"
	AuditDeviceAdd   = "device.add"
	AuditDeviceRm    = "device.rm"
	AuditDeviceSet   = "device.set"
	AuditRotate      = "device.rotate"
	AuditEnable      = "device.enable"
	AuditDisable     = "device.disable"
	AuditEnroll      = "device.enroll"
	AuditEnrollKey   = "enroll.create"
	AuditEnrollRm    = "enroll.rm"
	AuditGroupAdd    = "group.add"
	AuditGroupRm     = "group.rm"
	AuditGroupSet    = "group.set"
	AuditUserAdd     = "user.add"
	AuditUserRm      = "user.rm"
	AuditUserSet     = "user.set"
	AuditTOTP        = "user.totp"
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

// Audit queues e for the log. It never blocks on the disk.
func (s *Store) Audit(e AuditEvent) {}

// AuditFilter selects audit events; zero fields select all.
type AuditFilter struct {
	Since  time.Time
	User   string
	Device string
	Kind   string // exact, or a prefix ending in "." ("device.")
	Limit  int    // the newest Limit matching events; 0 for all
}

// AuditEvents writes queued events, then returns the matching ones, oldest
// first.
func (s *Store) AuditEvents(f AuditFilter) ([]AuditEvent, error) { return nil, errTODO }

// SetAuditRetention sets how long events are kept (default 90 days); older
// ones are pruned at the next hourly pass.
func (s *Store) SetAuditRetention(d time.Duration) {}

// auditLog is the queue of events not yet written.
type auditLog struct {
	mu   sync.Mutex
	full chan struct{} // signalled when the queue should be written early; may be nil
}

func (s *Store) flushAudit() error { return nil }
