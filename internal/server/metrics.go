package server

// The metrics listener serves the reflector's counters in the Prometheus text
// exposition format (version 0.0.4): connected devices, open streams, stream
// opens by result and bytes carried, each by agent kind (our own agent,
// "reflector.v1", and WebTunnelAgent, "webtunnel"), and a few process facts.
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

	"github.com/reflector-dev/reflector/tunnel"
)

// MetricsSource is what the handler reads: the hub.
type MetricsSource interface {
	Metrics() (kinds []tunnel.KindMetrics, offline int64)
}

// Handler answers GET /metrics with a snapshot of src.
func MetricsHandler(src MetricsSource) http.Handler {
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		writeMetrics(bw, src, start)
		bw.Flush()
	})
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

	metricFamily(w, "go_goroutines", "gauge", "Goroutines now.")
	fmt.Fprintf(w, "go_goroutines %d\n", runtime.NumGoroutine())
	metricFamily(w, "process_start_time_seconds", "gauge", "When the process started, in seconds since 1970.")
	fmt.Fprintf(w, "process_start_time_seconds %d\n", start.Unix())
	if rss, ok := residentBytes(); ok {
		metricFamily(w, "process_resident_memory_bytes", "gauge", "Resident memory of the process.")
		fmt.Fprintf(w, "process_resident_memory_bytes %d\n", rss)
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
