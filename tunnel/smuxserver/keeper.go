package smuxserver

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
// Its goroutine runs while it has sessions. Times are counted in ticks of
// a quarter interval, so a NOP leaves between 1 and 1¼ intervals after the
// last frame, and a silent peer is closed between 1 and 1 + ¼·interval/timeout
// timeouts after its last frame.
type Keeper struct {
	tick         time.Duration
	pingTicks    uint32 // interval in ticks
	timeoutTicks uint32 // timeout in ticks

	epoch atomic.Uint32 // ticks so far

	mu       sync.Mutex
	sessions map[*Session]struct{}
	running  bool
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
	}
}

// now is the current tick, for the sessions' last-read and last-write marks.
func (k *Keeper) now() uint32 { return k.epoch.Load() }

func (k *Keeper) add(s *Session) {
	now := k.now()
	s.readTick.Store(now)
	s.writeTick.Store(now)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sessions[s] = struct{}{}
	if !k.running {
		k.running = true
		go k.run()
	}
}

func (k *Keeper) remove(s *Session) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.sessions, s)
}

// run ticks until no session is left.
func (k *Keeper) run() {
	t := time.NewTicker(k.tick)
	defer t.Stop()
	for range t.C {
		if !k.sweep() {
			return
		}
	}
}

// sweep advances the clock one tick and visits every session; it reports
// whether any are left (if not, the goroutine ends, under the lock that
// add starts a new one under).
func (k *Keeper) sweep() bool {
	now := k.epoch.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.sessions) == 0 {
		k.running = false
		return false
	}
	for s := range k.sessions {
		if s.starved.Load() {
			// The session stopped reading: the peer's frames wait in the
			// connection, and its silence means nothing (as in smux).
			s.readTick.Store(now)
		}
		if now-s.readTick.Load() >= k.timeoutTicks {
			delete(k.sessions, s)
			go s.closeWith(ErrKeepAliveTimeout)
			continue
		}
		if now-s.writeTick.Load() >= k.pingTicks && s.pinging.CompareAndSwap(false, true) {
			// On a goroutine of its own: a NOP to a peer that stopped
			// reading may wait for the write timeout, and must not hold
			// up the others.
			go s.ping()
		}
	}
	return true
}
