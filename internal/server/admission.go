package server

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// Admission of agent handshakes (issue 16, "Storms without collapse").
//
// After a restart every agent of the fleet reconnects within seconds. Each
// handshake with an adopted secret waits for an argon2id computation (a few
// milliseconds of one CPU each, GOMAXPROCS at a time), so a storm of 10,000
// queues for tens of seconds, longer than an agent waits for its answer
// (agent.DefaultConnectTimeout, 10 s): it hangs up, retries, and queues
// again, and the queue's work is done for clients that have gone. The
// admission bounds the handshakes in progress to what the CPUs finish
// within handshakeBudget, and answers the others at once, before any
// authentication work, with 503 and a Retry-After that tells each refused
// agent when its turn would come.
const (
	// handshakeBudget is how long the handshakes admitted at once may take
	// to finish, all of them: a quarter of our agent's connect timeout,
	// so an admitted agent is answered well before it gives up, even when
	// the CPUs are slower than their calibration said.
	handshakeBudget = 2500 * time.Millisecond
	// minPendingHandshakes is the least default bound, whatever the
	// calibration: generated secrets cost no argon2id, and a small
	// reflector must still take a few agents at once.
	minPendingHandshakes = 64
	// tlsHandshakeCost is the CPU the rest of an agent's handshake costs
	// the reflector, added to its argon2id check: the server's side of a
	// TLS 1.3 handshake with an ECDSA P-256 certificate measured 0.31 to
	// 0.36 ms of CPU (Go 1.26 defaults, under load on the 2-core test
	// machine), and the request, the upgrade and the hub take the rest.
	tlsHandshakeCost = time.Millisecond
	// minRetryAfter and maxRetryAfter bound the Retry-After of a refused
	// agent: at least a second (the header's unit), at most what an agent
	// backs off by itself (agent.DefaultMaxDelay).
	minRetryAfter = time.Second
	maxRetryAfter = time.Minute
	// rateWindow is how far back completed handshakes are counted to
	// measure the rate at which the reflector finishes them.
	rateWindow = 5 // seconds
)

// handshakeCapacity is the rate at which the reflector finishes agent
// handshakes when each costs an argon2id check of check plus a TLS
// handshake, on cpus CPUs, and the bound of pending handshakes it finishes
// within handshakeBudget.
func handshakeCapacity(check time.Duration, cpus int) (perSecond float64, bound int) {
	perSecond = float64(cpus) / (check + tlsHandshakeCost).Seconds()
	return perSecond, max(minPendingHandshakes, int(perSecond*handshakeBudget.Seconds()))
}

// admission bounds the agent handshakes in progress on both wires, from the
// router's hand-off until the upgrade (the hijack) or the refusal (the
// first byte of an answer). Beyond max it answers 503 at once.
type admission struct {
	max int
	// assumedRate is the handshakes per second the CPUs finish by the
	// calibration; the measured rate replaces it when higher.
	assumedRate float64
	log         *slog.Logger
	now         func() time.Time // tests replace it

	pending atomic.Int64
	refused atomic.Uint64

	mu        sync.Mutex
	done      rateMeter
	nextRetry time.Time // when the last agent refused was told to come back
	logged    time.Time // the last refusal logged: at most one line a minute
}

// newAdmission returns an admission of max pending handshakes that
// assumes the CPUs finish rate of them per second. A nil logger discards.
func newAdmission(max int, rate float64, logger *slog.Logger) *admission {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &admission{max: max, assumedRate: rate, log: logger, now: time.Now}
}

// bound is the most handshakes admitted at once; 0 for a nil admission
// (no bound).
func (a *admission) bound() int {
	if a == nil {
		return 0
	}
	return a.max
}

// serve runs h, an agent endpoint, for r if a handshake may begin, and
// answers 503 with Retry-After otherwise. A nil admission admits all.
func (a *admission) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	// net/http ends a request's context when its client hangs up only once
	// the body has been read (its background read starts then): an upgrade
	// carries none, and one with a body could wait in the argon2id gate
	// for a client that has gone.
	if r.ContentLength != 0 {
		http.Error(w, "agent endpoint: an upgrade request carries no body", http.StatusBadRequest)
		return
	}
	if a == nil {
		h.ServeHTTP(w, r)
		return
	}
	if n := a.pending.Add(1); n > int64(a.max) {
		a.pending.Add(-1)
		a.refuse(w, r)
		return
	}
	aw := &admittedWriter{ResponseWriter: w, a: a}
	defer aw.finish()
	h.ServeHTTP(aw, r)
}

// refuse answers an agent beyond the bound.
func (a *admission) refuse(w http.ResponseWriter, r *http.Request) {
	a.refused.Add(1)
	wait, log := a.retryAfter()
	if log {
		a.log.Warn("agent handshakes at their bound: refusing agents with 503 for now",
			"pending", a.max, "retry_after", wait, "client", tunnel.ClientAddr(r))
	}
	w.Header().Set("Retry-After", tunnel.RetryAfterSeconds(wait))
	http.Error(w, "reflector busy with other agents' handshakes; retry after "+tunnel.RetryAfterSeconds(wait)+"s", http.StatusServiceUnavailable)
}

// retryAfter returns when a refused agent should come back, and whether
// to log the refusal. The refused agents form a queue behind the pending
// handshakes: each is given the next free place in it, 1/rate after the
// one before, at the rate the reflector finishes handshakes. Agents that
// come back when told arrive at the rate they can be served, rather than
// all at once after the same delay. (Turns given at twice the rate were
// tried on a 10,000-device cold start: as many connected per second, four
// times the refusals, each a TLS handshake for nothing.)
func (a *admission) retryAfter() (time.Duration, bool) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	rate := max(a.done.rate(now), a.assumedRate)
	step := time.Duration(float64(time.Second) / rate)
	// The pending handshakes are ahead of every refused agent.
	start := now.Add(time.Duration(a.pending.Load()) * step)
	if a.nextRetry.Before(start) {
		a.nextRetry = start
	}
	wait := min(max(a.nextRetry.Sub(now), minRetryAfter), maxRetryAfter)
	// Past the cap the queue does not grow: those agents come back
	// together at the cap, and are refused again if it is still full.
	a.nextRetry = a.nextRetry.Add(step)
	if limit := now.Add(maxRetryAfter); a.nextRetry.After(limit) {
		a.nextRetry = limit
	}
	log := now.Sub(a.logged) >= time.Minute
	if log {
		a.logged = now
	}
	return wait, log
}

// finished counts a handshake that is over, admitted or refused by its
// endpoint.
func (a *admission) finished() {
	a.pending.Add(-1)
	now := a.now()
	a.mu.Lock()
	a.done.add(now)
	a.mu.Unlock()
}

// admittedWriter is the ResponseWriter of an admitted handshake: the
// handshake is over at its first answer or its hijack (the upgrade), and
// at the latest when the handler returns.
type admittedWriter struct {
	http.ResponseWriter
	a    *admission
	once sync.Once
}

func (w *admittedWriter) finish() { w.once.Do(w.a.finished) }

func (w *admittedWriter) WriteHeader(code int) {
	w.finish()
	w.ResponseWriter.WriteHeader(code)
}

func (w *admittedWriter) Write(p []byte) (int, error) {
	w.finish()
	return w.ResponseWriter.Write(p)
}

// Hijack is the upgrade: both endpoints' WebSocket upgraders take the
// connection through it.
func (w *admittedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.finish()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController the server's writer.
func (w *admittedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// rateMeter counts events per second over the last rateWindow seconds.
type rateMeter struct {
	sec [rateWindow]int64 // the Unix second each count is of
	n   [rateWindow]int64
}

func (m *rateMeter) add(now time.Time) {
	s := now.Unix()
	i := s % rateWindow
	if m.sec[i] != s {
		m.sec[i], m.n[i] = s, 0
	}
	m.n[i]++
}

// rate returns the events per second since the oldest second counted
// within the window, at least one second back; 0 without any.
func (m *rateMeter) rate(now time.Time) float64 {
	s := now.Unix()
	var total int64
	oldest := s
	for i := range m.sec {
		if m.n[i] > 0 && s-m.sec[i] < rateWindow {
			total += m.n[i]
			oldest = min(oldest, m.sec[i])
		}
	}
	if total == 0 {
		return 0
	}
	span := max(now.Sub(time.Unix(oldest, 0)), time.Second)
	return float64(total) / span.Seconds()
}
