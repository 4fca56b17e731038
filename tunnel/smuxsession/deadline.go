package smuxsession

import (
	"sync"
	"time"
)

// deadline is one of a stream's deadlines: a channel that is closed when
// the deadline passes, which waits select on. Setting it costs a timer;
// waiting on it costs nothing.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired chan struct{} // closed once the deadline has passed; nil until needed
	passed  bool          // expired is closed
	gen     uint64        // counts set calls: a timer of an earlier one does nothing
}

// set moves the deadline to t; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.passed { // a new deadline needs a channel that is open
		d.expired = nil
		d.passed = false
	}
	if t.IsZero() {
		return
	}
	if wait := time.Until(t); wait > 0 {
		gen := d.gen
		d.timer = time.AfterFunc(wait, func() { d.expire(gen) })
		return
	}
	d.expireLocked()
}

func (d *deadline) expire(gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gen == d.gen {
		d.expireLocked()
	}
}

func (d *deadline) expireLocked() {
	if d.passed {
		return
	}
	if d.expired == nil {
		d.expired = make(chan struct{})
	}
	close(d.expired)
	d.passed = true
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.expired == nil {
		d.expired = make(chan struct{})
	}
	return d.expired
}
