package server

// Health checks for load balancers and orchestrators, unauthenticated:
//
//	GET /healthz                  the process serves: 200 "ok"
//	GET /readyz                   the database answers and every listener
//	                              serves: 200 "ready", else 503 and a reason
//	GET /my-devices/health.json   readiness as JSON, at the path load
//	                              balancers in front of macchina.io REMOTE
//	                              already probe (the body is ours)
//
// They are served on the TLS listener's admin host (router.go) and on the
// metrics listener (metrics.go); never on device hosts, whose /healthz is
// the device's own.

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
)

// Paths of the health checks.
const (
	healthzPath    = "/healthz"
	readyzPath     = "/readyz"
	healthJSONPath = "/my-devices/health.json"
)

// isHealthPath reports whether path is one of the health checks.
func isHealthPath(path string) bool {
	return path == healthzPath || path == readyzPath || path == healthJSONPath
}

// health answers the health checks. Run tells it when the listeners serve
// (listenerServing, via each http.Server's BaseContext) and when shutdown
// begins (drain); ping asks the database.
type health struct {
	ping      func() error
	listeners int32 // listeners Run serves; set by expect before they serve
	logger    *slog.Logger

	serving  atomic.Int32 // listeners whose Serve has reached its accept loop
	draining atomic.Bool  // set once shutdown begins; never cleared
	notReady atomic.Bool  // the last answer was 503; for logging changes only
}

func newHealth(ping func() error, logger *slog.Logger) *health {
	return &health{ping: ping, logger: logger}
}

// expect sets how many listeners Run serves; before any of them serves.
func (h *health) expect(listeners int) { h.listeners = int32(listeners) }

// listenerServing is an http.Server's BaseContext: net/http calls it once
// per Serve, after the listener is registered for Shutdown and just before
// the accept loop, which makes it the moment the listener serves.
func (h *health) listenerServing(net.Listener) context.Context {
	h.serving.Add(1)
	return context.Background()
}

// drain turns readiness off for good: shutdown has begun, and load
// balancers should send new connections elsewhere while this process
// finishes what it holds. Liveness stays on until the process exits.
func (h *health) drain() { h.draining.Store(true) }

// notReadyReason is "" when ready, else the one-line reason.
func (h *health) notReadyReason() string {
	switch {
	case h.draining.Load():
		return "shutting down"
	case h.serving.Load() < h.listeners:
		return "listeners not serving yet"
	}
	if err := h.ping(); err != nil {
		return "database: " + err.Error()
	}
	return ""
}

// ready answers the reason and logs when readiness changes, not per probe.
func (h *health) ready() (reason string) {
	reason = h.notReadyReason()
	if was := h.notReady.Swap(reason != ""); was != (reason != "") {
		if reason != "" {
			h.logger.Warn("not ready", "reason", reason)
		} else {
			h.logger.Info("ready")
		}
	}
	return reason
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: health checks take GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	// A cached answer is a stale one: a probe must reach this process.
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case healthzPath:
		writeText(w, http.StatusOK, "ok\n")
	case readyzPath:
		if reason := h.ready(); reason != "" {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+reason+"\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	case healthJSONPath:
		h.serveJSON(w)
	default:
		http.NotFound(w, r)
	}
}

// healthStatus is the body of /my-devices/health.json. macchina.io does not
// publish what its own server answers there; load balancers we know of go
// by the status code, which is what this keeps compatible.
type healthStatus struct {
	Status string `json:"status"`           // "ok" or "unavailable"
	Reason string `json:"reason,omitempty"` // why not ok, one line
}

func (h *health) serveJSON(w http.ResponseWriter) {
	st, code := healthStatus{Status: "ok"}, http.StatusOK
	if reason := h.ready(); reason != "" {
		st, code = healthStatus{Status: "unavailable", Reason: reason}, http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(st) // a failed write is the prober's hang-up
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write([]byte(body)) // a failed write is the prober's hang-up
}
