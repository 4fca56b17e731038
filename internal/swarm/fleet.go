package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// fleet counts what the simulated agents report: which are connected, how
// many attempts failed and why. Agents of both wires report to it.
type fleet struct {
	up       []atomic.Bool  // agent i has a tunnel now
	upEpoch  []atomic.Int64 // the epoch in which agent i last connected
	epoch    atomic.Int64
	n        atomic.Int64 // agents connected now
	epochN   atomic.Int64 // agents that connected in the current epoch
	failures atomic.Int64 // failed attempts, all epochs
	drops    atomic.Int64 // tunnels that ended, all epochs

	mu    sync.Mutex
	kinds map[string]int64 // failures by cause, at most maxKinds causes
}

const maxKinds = 8

func newFleet(n int) *fleet {
	f := &fleet{up: make([]atomic.Bool, n), upEpoch: make([]atomic.Int64, n), kinds: map[string]int64{}}
	f.epoch.Store(1) // upEpoch 0 is "never connected"
	return f
}

// connected records that agent i has a tunnel.
func (f *fleet) connected(i int) {
	if !f.up[i].Swap(true) {
		f.n.Add(1)
	}
	if e := f.epoch.Load(); f.upEpoch[i].Swap(e) != e {
		f.epochN.Add(1)
	}
}

// disconnected records that agent i's tunnel ended.
func (f *fleet) disconnected(i int) {
	if f.up[i].Swap(false) {
		f.n.Add(-1)
		f.drops.Add(1)
	}
}

// failed records a failed attempt to connect and its cause.
func (f *fleet) failed(err error) {
	f.failures.Add(1)
	k := failureKind(err)
	f.mu.Lock()
	if _, ok := f.kinds[k]; ok || len(f.kinds) < maxKinds {
		f.kinds[k]++
	} else {
		f.kinds["other"]++
	}
	f.mu.Unlock()
}

// newEpoch starts counting connections and causes of failures afresh:
// after a restart, an agent counts as reconnected only once it connected
// again, even if it has not yet noticed that its old tunnel is gone.
func (f *fleet) newEpoch() {
	f.epochN.Store(0)
	f.epoch.Add(1)
	f.mu.Lock()
	f.kinds = map[string]int64{}
	f.mu.Unlock()
}

// all reports whether every agent is connected, each since the current
// epoch began.
func (f *fleet) all() bool {
	n := int64(len(f.up))
	return f.n.Load() == n && f.epochN.Load() == n
}

// failureKinds returns the causes of failures, commonest first.
func (f *fleet) failureKinds() []FailureKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FailureKind, 0, len(f.kinds))
	for k, n := range f.kinds {
		out = append(out, FailureKind{Cause: k, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// failureKind names the cause of a failed attempt without what differs
// between attempts (addresses and ports of a network error).
func failureKind(err error) string {
	if err == nil {
		return "unknown"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// loopback returns the address agent i dials from: 127.x.y.z with
// x ≥ 1 and no 0 or 255 byte, so the reflector, listening on 127.0.0.1,
// sees each agent at its own address (all of 127/8 is local on Linux), as
// it sees a fleet in the field. The per-address connection limit in front
// of authentication would otherwise refuse all but a few hundred.
func loopback(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + i/(254*254)), byte(1 + i/254%254), byte(1 + i%254)})
}

// agentLog is the slog handler of one of our agents: it turns the agent's
// own log messages into the fleet's counts. The agent logs "connected"
// when its tunnel is up and "disconnected" when it ends; every failed
// attempt is logged (the repeated ones at Debug) with the delay before the
// next one as retry_in, the only other record that carries it being
// "connecting" after a disconnect.
type agentLog struct {
	f *fleet
	i int
}

func (h agentLog) Enabled(context.Context, slog.Level) bool { return true }

func (h agentLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "connected":
		h.f.connected(h.i)
		return nil
	case "disconnected":
		h.f.disconnected(h.i)
		return nil
	case "connecting":
		return nil
	}
	var retry bool
	var cause error
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "retry_in":
			retry = true
		case "err":
			if e, ok := a.Value.Any().(error); ok {
				cause = e
			} else {
				cause = errors.New(a.Value.String())
			}
		}
		return true
	})
	if retry {
		if cause == nil { // "device credentials refused (401); waiting" and the like
			cause = errors.New(strings.TrimSuffix(r.Message, "; waiting"))
		}
		h.f.failed(cause)
	}
	return nil
}

func (h agentLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h agentLog) WithGroup(string) slog.Handler      { return h }

// String is for the summary.
func (k FailureKind) String() string { return fmt.Sprintf("%d× %s", k.Count, k.Cause) }
