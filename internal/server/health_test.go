package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/store"
)

// probe is a load balancer's health check: a request on a fresh client
// that trusts the self-signed certificate, with Host set to host.
func probe(t *testing.T, method, url, host string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// waitReady waits until base's /readyz answers 200: Run has only just
// started its listeners' Serve.
func waitReady(t *testing.T, base string) {
	t.Helper()
	waitUntil(t, base+"/readyz is 200", func() bool {
		resp, _ := probe(t, http.MethodGet, base+"/readyz", "")
		return resp.StatusCode == http.StatusOK
	})
}

// TestHealthChecksAnswerOnTheAdminHostOverTLS: a running server answers
// all three checks, to GET and HEAD, by IP (as load balancers probe) and by
// its domain, unauthenticated and uncached.
func TestHealthChecksAnswerOnTheAdminHostOverTLS(t *testing.T) {
	s := runServer(t, Config{})
	base := "https://" + s.Addr().String()
	waitReady(t, base)
	for _, host := range []string{"", "localhost"} {
		for _, tc := range []struct {
			path, contentType, body string
		}{
			{"/healthz", "text/plain; charset=utf-8", "ok\n"},
			{"/readyz", "text/plain; charset=utf-8", "ready\n"},
			{"/my-devices/health.json", "application/json", `{"status":"ok"}` + "\n"},
		} {
			resp, body := probe(t, http.MethodGet, base+tc.path, host)
			if resp.StatusCode != http.StatusOK || body != tc.body {
				t.Errorf("GET %s (Host %q): %d %q; want 200 %q", tc.path, host, resp.StatusCode, body, tc.body)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("GET %s: Content-Type %q; want %q", tc.path, got, tc.contentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("GET %s: Cache-Control %q; want no-store", tc.path, got)
			}
			resp, body = probe(t, http.MethodHead, base+tc.path, host)
			if resp.StatusCode != http.StatusOK || body != "" {
				t.Errorf("HEAD %s (Host %q): %d %q; want 200 and no body", tc.path, host, resp.StatusCode, body)
			}
		}
	}
}

// TestHealthChecksRefuseOtherMethodsWith405: GET and HEAD only, said in
// Allow.
func TestHealthChecksRefuseOtherMethodsWith405(t *testing.T) {
	s := runServer(t, Config{})
	base := "https://" + s.Addr().String()
	for _, path := range []string{"/healthz", "/readyz", "/my-devices/health.json"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			resp, _ := probe(t, method, base+path, "")
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q; want 405 Allow \"GET, HEAD\"", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
}

// TestReadyzIs503WhenTheDatabaseIsClosed: with the store closed under a
// running server, readiness fails with the database's reason while
// liveness holds.
func TestReadyzIs503WhenTheDatabaseIsClosed(t *testing.T) {
	s := runServer(t, Config{})
	base := "https://" + s.Addr().String()
	waitReady(t, base)
	if err := s.Store().Close(); err != nil {
		t.Fatal(err)
	}
	resp, body := probe(t, http.MethodGet, base+"/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: database: ") ||
		strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
		t.Errorf("readyz: %d %q; want 503 and one line \"not ready: database: ...\"", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("readyz 503: Cache-Control %q; want no-store", resp.Header.Get("Cache-Control"))
	}
	if strings.Contains(body, s.Store().Dir()) {
		t.Errorf("readyz tells unauthenticated probes the data directory: %q", body)
	}
	resp, body = probe(t, http.MethodGet, base+"/my-devices/health.json", "")
	var st healthStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
		st.Status != "unavailable" || !strings.HasPrefix(st.Reason, "database: ") {
		t.Errorf("health.json: %d %q (%v); want 503 unavailable, database: ...", resp.StatusCode, body, err)
	}
	if resp, body := probe(t, http.MethodGet, base+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz with the database closed: %d %q; want 200", resp.StatusCode, body)
	}
}

// TestReadyzIs503WhileShuttingDown: once shutdown begins, readiness fails
// so load balancers drain the reflector; during DrainDelay the listeners
// still serve, and liveness holds until the process exits.
func TestReadyzIs503WhileShuttingDown(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), DrainDelay: 2 * time.Second}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "https://" + s.Addr().String()
	waitReady(t, base)

	cancel()
	waitUntil(t, "readyz is 503", func() bool {
		resp, _ := probe(t, http.MethodGet, base+"/readyz", "")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, body := probe(t, http.MethodGet, base+"/readyz", ""); body != "not ready: shutting down\n" {
		t.Errorf("readyz while draining: %d %q", resp.StatusCode, body)
	}
	if resp, body := probe(t, http.MethodGet, base+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz while draining: %d %q; want 200", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the drain delay")
	}
}

// TestReadyzWaitsForEveryListener: until each of Run's listeners has
// reached its accept loop, the reflector is not ready.
func TestReadyzWaitsForEveryListener(t *testing.T) {
	h := newHealth(func() error { return nil }, slog.New(slog.DiscardHandler))
	h.expect(2)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || body != "not ready: listeners not serving yet\n" {
		t.Errorf("no listener serving: %d %q", code, body)
	}
	h.listenerServing(nil)
	if code, _ := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("one of two listeners serving: %d; want 503", code)
	}
	h.listenerServing(nil)
	if code, body := readyz(); code != http.StatusOK || body != "ready\n" {
		t.Errorf("both listeners serving: %d %q; want 200 ready", code, body)
	}
	h.ping = func() error { return errors.New("ping store: read transaction: database not open") }
	if code, body := readyz(); code != http.StatusServiceUnavailable ||
		body != "not ready: database: ping store: read transaction: database not open\n" {
		t.Errorf("database failing: %d %q", code, body)
	}
}

// TestDeviceHostHealthzIsTheDevices: /healthz on a device's host belongs
// to the device's own web server: an offline device's is 502, and without
// credentials the reflector asks for them; never our "ok".
func TestDeviceHostHealthzIsTheDevices(t *testing.T) {
	s := runServer(t, Config{})
	st := s.Store()
	if err := st.AddUser("alice", "correct horse battery", store.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	token, _, err := st.CreateToken(store.Token{User: "alice", Name: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddDevice(store.Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	base := "https://" + s.Addr().String()
	waitReady(t, base)
	for _, path := range []string{"/healthz", "/readyz", "/my-devices/health.json"} {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Host = "pump-17.localhost"
		req.Header.Set(admin.AuthHeader, "Bearer "+token)
		if resp, body := do(t, req); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("GET %s on the offline device's host: %d %q; want the device's 502", path, resp.StatusCode, body)
		}
		resp, body := probe(t, http.MethodGet, base+path, "pump-17.localhost")
		if resp.StatusCode == http.StatusOK || body == "ok\n" {
			t.Errorf("GET %s on a device host without credentials: %d %q; want the device's login, not ours", path, resp.StatusCode, body)
		}
	}
}

// TestPlainProxyListenerHasNoHealthChecks: --proxy-listen serves the
// proxy alone.
func TestPlainProxyListenerHasNoHealthChecks(t *testing.T) {
	s := runServer(t, Config{})
	for _, path := range []string{"/healthz", "/readyz", "/my-devices/health.json"} {
		resp, body := probe(t, http.MethodGet, "http://"+s.ProxyAddr().String()+path, "")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the plain proxy listener: %d %q; want 404", path, resp.StatusCode, body)
		}
	}
}

// TestMetricsListenerServesHealthChecks: probes that reach the reflector
// on its private address find the checks beside /metrics.
func TestMetricsListenerServesHealthChecks(t *testing.T) {
	s := runServer(t, Config{MetricsListen: "127.0.0.1:0"})
	base := "http://" + s.MetricsAddr().String()
	waitReady(t, base)
	for path, want := range map[string]string{
		"/healthz":                "ok\n",
		"/readyz":                 "ready\n",
		"/my-devices/health.json": `{"status":"ok"}` + "\n",
	} {
		if resp, body := probe(t, http.MethodGet, base+path, ""); resp.StatusCode != http.StatusOK || body != want {
			t.Errorf("GET %s on the metrics listener: %d %q; want 200 %q", path, resp.StatusCode, body, want)
		}
		if resp, _ := probe(t, http.MethodHead, base+path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s on the metrics listener: %d", path, resp.StatusCode)
		}
		if resp, _ := probe(t, http.MethodPost, base+path, ""); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s on the metrics listener: %d; want 405", path, resp.StatusCode)
		}
	}
	if resp, _ := probe(t, http.MethodGet, base+"/metrics", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics beside them: %d", resp.StatusCode)
	}
}
