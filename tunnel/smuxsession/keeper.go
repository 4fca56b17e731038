package smuxsession

import (
	"sync"
	"sync/atomic"
	"time"
)

// Keeper keeps the sessions given to it alive and finds the dead ones,
// from one goroutine for all of them: each session that has sent nothing
// for the interval gets a NOP (smux's keep-alive frame; the agent closes a
// session that received nothing for its own timeout), and each session
// that received nothing for the timeout is closed with ErrKeepAliveTimeout.
// Its goroutine runs while it has sessions and ends with the last one.
// Times are counted in ticks of a quarter interval: a NOP leaves between
// 1 and 1¼ intervals after the last frame sent, and a silent peer is
// closed between one timeout and one timeout plus half an interval after
// its last frame.
type Keeper struct {
	tick         time.Duration
	pingTicks    uint32 // interval in ticks
	timeoutTicks uint32 // timeout in ticks

	start time.Time
	epoch atomic.Uint32 // ticks from start to the last sweep

	mu       sync.Mutex
	sessions map[*Session]struct{}
	stop     chan struct{} // closed to end the goroutine; nil while none runs
}

// NewKeeper returns a Keeper that sends a NOP every interval of silence and
// closes a session after timeout without input.
func NewKeeper(interval, timeout time.Duration) *Keeper {
	tick := max(interval/4, time.Millisecond)
	return &Keeper{
		tick:         tick,
		pingTicks:    uint32(max(interval/tick, 1)),
		timeoutTicks: uint32(max(timeout/tick, 1)),
		sessions:     make(map[*Session]struct{}),
		start:        time.Now(),
	}
}

// now is the current tick, for the sessions' last-read and last-write marks.
func (k *Keeper) now() uint32 { return k.epoch.Load() }

func (k *Keeper) add(s *Session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.advance()
	s.readTick.Store(now)
	s.writeTick.Store(now)
	k.sessions[s] = struct{}{}
	if k.stop == nil {
		k.stop = make(chan struct{})
		go k.run(k.stop)
	}
}

// remove forgets s. The goroutine ends with the last session, at once, so
// that a server that has closed its tunnels leaves nothing running.
func (k *Keeper) remove(s *Session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.sessions, s)
	k.stopIfIdle()
}

// stopIfIdle ends the goroutine when no session is left; the caller holds mu.
func (k *Keeper) stopIfIdle() {
	if len(k.sessions) == 0 && k.stop != nil {
		close(k.stop)
		k.stop = nil
	}
}

// advance sets the clock to now and returns it; the caller holds mu, so
// the clock never goes back. It is counted from the time, not from the
// ticks received: a ticker drops ticks while its goroutine is late, and a
// keep-alive must not be late by as much.
func (k *Keeper) advance() uint32 {
	now := uint32(time.Since(k.start) / k.tick)
	k.epoch.Store(now)
	return now
}

// run sweeps every tick until stop is closed.
func (k *Keeper) run(stop chan struct{}) {
	t := time.NewTicker(k.tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			k.sweep()
		case <-stop:
			return
		}
	}
}

// sweep advances the clock and visits every session.
func (k *Keeper) sweep() {
	k.mu.Lock()
	defer k.mu.Unlock()
	// Frames arriving since the last sweep carry its clock (last), not
	// now: silence is counted up to last, so a sweep that comes late
	// (a loaded machine) does not take a live peer for a silent one.
	last := k.epoch.Load()
	now := k.advance()
	for s := range k.sessions {
		if s.starved.Load() {
			// The session stopped reading: the peer's frames wait in the
			// connection, and its silence means nothing (as in smux).
			s.readTick.Store(last)
		}
		// Signed: a frame read during this sweep may carry now.
		if int32(last-s.readTick.Load()) >= int32(k.timeoutTicks) {
			delete(k.sessions, s)
			go s.closeWith(ErrKeepAliveTimeout)
			continue
		}
		if int32(now-s.writeTick.Load()) >= int32(k.pingTicks) && s.pinging.CompareAndSwap(false, true) {
			// On a goroutine of its own: a NOP to a peer that stopped
			// reading may wait for the write timeout, and must not hold
			// up the others.
			go s.pingFunc()
		}
	}
	k.stopIfIdle()
}
