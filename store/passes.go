package store

import (
	"sync"
	"time"
)

// The writer goroutine's periodic passes (pruneTokens, pruneSessions,
// pruneAudit) share two things: when they are due, and walking a large
// bucket in chunks, a transaction each, so other writers get in between.

// passClock remembers when a pass last finished, so the pass runs at the
// first tick after Open and then at most once per its interval. Tests run
// passes beside the writer, hence the lock.
type passClock struct {
	mu   sync.Mutex
	last time.Time // zero before the first pass
}

// due reports whether a pass with interval every is due at now.
func (p *passClock) due(now time.Time, every time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last.IsZero() || now.Sub(p.last) >= every
}

// ran records that a pass finished at now.
func (p *passClock) ran(now time.Time) {
	p.mu.Lock()
	p.last = now
	p.mu.Unlock()
}

// walkChunks calls chunk with a nil key (the start of the bucket), then
// with each key it returns, until it returns nil or an error, which
// walkChunks returns.
func walkChunks(chunk func(from []byte) (next []byte, err error)) error {
	var from []byte
	for {
		next, err := chunk(from)
		if err != nil || next == nil {
			return err
		}
		from = next
	}
}
