package server

// The metrics listener serves the reflector's counters in the Prometheus text
// exposition format (version 0.0.4): connected devices, open streams, stream
// opens by result and bytes carried, each by agent kind (our own agent,
// "reflector.v1", and WebTunnelAgent, "webtunnel"); the agent handshakes in
// progress and refused, the argon2id gate, and a few process facts, the
// descriptor limit among them.
// It has no authentication: serve it on a loopback or private address
// (`reflector serve --metrics-listen 127.0.0.1:9464`).

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/tunnel"
)

// MetricsSource is what the handler reads: the hub. A source that is also a
// limitsSource (the server's) adds its limits.
type MetricsSource interface {
	Metrics() (kinds []tunnel.KindMetrics, offline int64)
}

// limitsSource is the server's side of the metrics, beside the hub's.
type limitsSource interface {
	limits() limitMetrics
}

// limitMetrics are the counts of the limits an operator watches in a storm.
type limitMetrics struct {
	handshakesPending, handshakesMax int64 // max 0: no bound
	handshakesRefused                uint64
	argonRuns                        uint64
	argonWaiting                     int64
	fdLimit                          uint64 // 0: unknown
	vias                             []proxy.ViaMetrics
}

// serverMetrics is the metrics source of a Server: the hub's counts and
// the server's limits.
type serverMetrics struct {
	*tunnel.Hub
	s *Server
}

func (s *Server) metricsSource() serverMetrics { return serverMetrics{Hub: s.hub, s: s} }

func (m serverMetrics) limits() limitMetrics {
	argon := m.s.store.ArgonStats()
	l := limitMetrics{argonRuns: argon.Runs, argonWaiting: argon.Waiting, fdLimit: m.s.fdLimit, vias: m.s.proxy.ViaMetrics()}
	if a := m.s.admission; a != nil {
		l.handshakesPending, l.handshakesMax, l.handshakesRefused = a.pending.Load(), int64(a.max), a.refused.Load()
	}
	return l
}

// MetricsHandler answers GET /metrics with a snapshot of src.
func MetricsHandler(src MetricsSource) http.Handler { return metricsMux(src, nil) }

// metricsMux is the metrics listener's mux: /metrics and, if health is not
// nil, the health checks (health.go) beside it, for probes that reach the
// reflector on its private address.
func metricsMux(src MetricsSource, health http.Handler) http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		writeMetrics(bw, src, start)
		bw.Flush()
	})
	if health != nil {
		for _, path := range []string{healthzPath, readyzPath, healthJSONPath} {
			mux.Handle(path, health) // every method: health answers 405 itself
		}
	}
	return mux
}

// family is one metric's HELP and TYPE lines.
func metricFamily(w *bufio.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func writeMetrics(w *bufio.Writer, src MetricsSource, start time.Time) {
	kinds, offline := src.Metrics()
	perKind := func(name, typ, help string, value func(tunnel.KindMetrics) int64) {
		metricFamily(w, name, typ, help)
		for _, k := range kinds {
			fmt.Fprintf(w, "%s{kind=%s} %d\n", name, metricLabel(k.Kind), value(k))
		}
	}
	perKind("reflector_devices_connected", "gauge", "Devices with a tunnel now, by agent kind.",
		func(k tunnel.KindMetrics) int64 { return k.Connected })
	perKind("reflector_tunnels_total", "counter", "Device tunnels registered, by agent kind.",
		func(k tunnel.KindMetrics) int64 { return k.Connects })
	perKind("reflector_streams_open", "gauge", "Streams to devices open now, by agent kind.",
		func(k tunnel.KindMetrics) int64 { return k.OpenStreams })

	metricFamily(w, "reflector_stream_opens_total", "counter",
		"Stream opens to connected devices, by agent kind and result.")
	for _, k := range kinds {
		for _, r := range tunnel.OpenResults() {
			fmt.Fprintf(w, "reflector_stream_opens_total{kind=%s,result=%q} %d\n", metricLabel(k.Kind), r.String(), k.Opens[r])
		}
	}
	metricFamily(w, "reflector_stream_opens_offline_total", "counter",
		"Stream opens refused because the device was not connected.")
	fmt.Fprintf(w, "reflector_stream_opens_offline_total %d\n", offline)

	metricFamily(w, "reflector_stream_bytes_total", "counter",
		"Bytes carried by streams, by agent kind and direction (to or from the device).")
	for _, k := range kinds {
		fmt.Fprintf(w, "reflector_stream_bytes_total{kind=%s,direction=\"from_device\"} %d\n", metricLabel(k.Kind), k.BytesIn)
		fmt.Fprintf(w, "reflector_stream_bytes_total{kind=%s,direction=\"to_device\"} %d\n", metricLabel(k.Kind), k.BytesOut)
	}

	if ls, ok := src.(limitsSource); ok {
		writeLimits(w, ls.limits())
	}

	metricFamily(w, "go_goroutines", "gauge", "Goroutines now.")
	fmt.Fprintf(w, "go_goroutines %d\n", runtime.NumGoroutine())
	metricFamily(w, "process_start_time_seconds", "gauge", "When the process started, in seconds since 1970.")
	fmt.Fprintf(w, "process_start_time_seconds %d\n", start.Unix())
	if rss, ok := residentBytes(); ok {
		metricFamily(w, "process_resident_memory_bytes", "gauge", "Resident memory of the process.")
		fmt.Fprintf(w, "process_resident_memory_bytes %d\n", rss)
	}
}

// writeLimits writes the limits an operator watches in a storm.
func writeLimits(w *bufio.Writer, l limitMetrics) {
	metricFamily(w, "reflector_user_streams_open", "gauge",
		"Users' streams and forwarded requests open now, by path: connect, absolute, subdomain, client-tool, websockify, and the browser's VNC and SSH.")
	for _, v := range l.vias {
		fmt.Fprintf(w, "reflector_user_streams_open{via=%s} %d\n", metricLabel(v.Via), v.Open)
	}
	metricFamily(w, "reflector_user_streams_total", "counter",
		"Users' streams and forwarded requests granted (access checked, before the device's answer), by path.")
	for _, v := range l.vias {
		fmt.Fprintf(w, "reflector_user_streams_total{via=%s} %d\n", metricLabel(v.Via), v.Granted)
	}
	metricFamily(w, "reflector_agent_handshakes_pending", "gauge",
		"Agent handshakes in progress on both wires: admitted, not yet upgraded or refused.")
	fmt.Fprintf(w, "reflector_agent_handshakes_pending %d\n", l.handshakesPending)
	metricFamily(w, "reflector_agent_handshakes_pending_max", "gauge",
		"The bound of agent handshakes in progress (--max-pending-handshakes); 0 for none.")
	fmt.Fprintf(w, "reflector_agent_handshakes_pending_max %d\n", l.handshakesMax)
	metricFamily(w, "reflector_agent_handshakes_refused_total", "counter",
		"Agent handshakes refused with 503 and Retry-After because the bound was reached.")
	fmt.Fprintf(w, "reflector_agent_handshakes_refused_total %d\n", l.handshakesRefused)
	metricFamily(w, "reflector_argon2id_computations_total", "counter",
		"argon2id computations run (adopted device secrets, user passwords).")
	fmt.Fprintf(w, "reflector_argon2id_computations_total %d\n", l.argonRuns)
	metricFamily(w, "reflector_argon2id_waiting", "gauge", "Credential checks waiting for a CPU for their argon2id computation.")
	fmt.Fprintf(w, "reflector_argon2id_waiting %d\n", l.argonWaiting)
	if l.fdLimit > 0 {
		metricFamily(w, "process_max_fds", "gauge", "The limit of open file descriptors (RLIMIT_NOFILE), read at start.")
		fmt.Fprintf(w, "process_max_fds %d\n", l.fdLimit)
	}
	if n, ok := openDescriptors(); ok {
		metricFamily(w, "process_open_fds", "gauge", "Open file descriptors.")
		fmt.Fprintf(w, "process_open_fds %d\n", n)
	}
}

// label quotes a label value as the text format wants: backslash, double
// quote and newline escaped.
func metricLabel(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// residentBytes reads the resident set size from /proc/self/statm (Linux).
func residentBytes() (int64, bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
