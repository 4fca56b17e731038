package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/tunnel"
)

type fakeSource struct{}

func (fakeSource) Metrics() ([]tunnel.KindMetrics, int64) {
	k := tunnel.KindMetrics{Kind: "webtunnel", Connected: 2, Connects: 3, OpenStreams: 4, BytesIn: 5, BytesOut: 6}
	k.Opens[tunnel.OpenOK], k.Opens[tunnel.OpenRefused] = 7, 8
	return []tunnel.KindMetrics{{Kind: `odd"kind\`}, k}, 9
}

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerWritesTheTextFormat(t *testing.T) {
	resp := get(t, MetricsHandler(fakeSource{}), http.MethodGet, "/metrics")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, line := range []string{
		`reflector_devices_connected{kind="webtunnel"} 2`,
		`reflector_tunnels_total{kind="webtunnel"} 3`,
		`reflector_streams_open{kind="webtunnel"} 4`,
		`reflector_stream_opens_total{kind="webtunnel",result="ok"} 7`,
		`reflector_stream_opens_total{kind="webtunnel",result="refused"} 8`,
		`reflector_stream_opens_total{kind="webtunnel",result="timeout"} 0`,
		`reflector_stream_opens_offline_total 9`,
		`reflector_stream_bytes_total{kind="webtunnel",direction="from_device"} 5`,
		`reflector_stream_bytes_total{kind="webtunnel",direction="to_device"} 6`,
		`reflector_devices_connected{kind="odd\"kind\\"} 0`,
		`# TYPE reflector_stream_bytes_total counter`,
		`# TYPE reflector_devices_connected gauge`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no line %s in:\n%s", line, text)
		}
	}
	// Every sample line is name{labels} integer.
	sample := regexp.MustCompile(`^[a-z_]+(\{[a-z]+="(?:[^"\\]|\\.)*"(,[a-z]+="(?:[^"\\]|\\.)*")*\})? \d+$`)
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, "# ") && !sample.MatchString(line) {
			t.Errorf("malformed sample %q", line)
		}
	}
}

func TestHandlerAnswersOnlyGETMetrics(t *testing.T) {
	h := MetricsHandler(fakeSource{})
	if code := get(t, h, http.MethodPost, "/metrics").StatusCode; code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
	if code := get(t, h, http.MethodGet, "/").StatusCode; code != http.StatusNotFound {
		t.Errorf("GET /: %d", code)
	}
}
