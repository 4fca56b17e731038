package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

const (
	testDevice = "dev1"
	testSecret = "s3cret"
)

// fastRetry makes the agent reconnect in milliseconds, and wait 300 ms after
// a 401.
var fastRetry = Options{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond,
	UnauthorizedDelay: 300 * time.Millisecond}

// reflector is a real reflector-side tunnel endpoint on a TLS test server.
// newStoreReflector adds a store and the enrolment endpoint.
type reflector struct {
	hub   *tunnel.Hub
	srv   *httptest.Server
	store *store.Store // nil for newReflector

	mu       sync.Mutex
	attempts []time.Time // every Authenticate call
}

// newReflector accepts device testDevice with testSecret.
func newReflector(t *testing.T) *reflector {
	t.Helper()
	return startReflector(t, nil, func(device, secret string) error {
		if device != testDevice || subtle.ConstantTimeCompare([]byte(secret), []byte(testSecret)) != 1 {
			return tunnel.ErrUnauthorized
		}
		return nil
	})
}

// startReflector serves the tunnel endpoint, checking credentials with
// authenticate, and whatever else mux holds (nil for nothing).
func startReflector(t *testing.T, mux *http.ServeMux, authenticate func(device, secret string) error) *reflector {
	t.Helper()
	r := &reflector{hub: tunnel.NewHub(nil)}
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.Handle(tunnel.Path, &tunnel.Server{
		Hub: r.hub,
		Authenticate: func(_ context.Context, _ netip.Addr, device, secret string) error {
			r.mu.Lock()
			r.attempts = append(r.attempts, time.Now())
			r.mu.Unlock()
			return authenticate(device, secret)
		},
	})
	r.srv = httptest.NewUnstartedServer(mux)
	// The fingerprint tests fail handshakes on purpose.
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.StartTLS()
	t.Cleanup(func() {
		r.hub.Close()
		r.srv.Close()
	})
	return r
}

func (r *reflector) attemptTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

// config returns an agent config for the reflector, pinned to its
// certificate.
func (r *reflector) config(ports ...uint16) Config {
	return Config{
		ReflectorURL: r.srv.URL,
		DeviceID:     testDevice,
		DeviceName:   "Pump 17",
		Secret:       testSecret,
		Ports:        ports,
		Fingerprint:  tunnel.Fingerprint(r.srv.Certificate().Raw),
	}
}

// waitConnected waits until the hub holds a tunnel of the device that
// connected after since, and returns its status.
func (r *reflector) waitConnected(t *testing.T, since time.Time) tunnel.DeviceStatus {
	t.Helper()
	var st tunnel.DeviceStatus
	waitFor(t, "device connected", func() bool {
		var ok bool
		st, ok = r.hub.Status(testDevice)
		return ok && st.ConnectedSince.After(since)
	})
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAgent runs an agent until the returned stop is called (or the test
// ends), and checks that Run then returns nil promptly.
func runAgent(t *testing.T, cfg Config, opts Options, logger *slog.Logger) (stop func()) {
	t.Helper()
	a, err := NewWithOptions(cfg, logger, opts)
	if err != nil {
		t.Fatalf("NewWithOptions: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// echoListener serves echo on 127.0.0.1 and returns its port.
func echoListener(t *testing.T) uint16 {
	return serveLocal(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// serveLocal listens on 127.0.0.1 until the test ends, runs handle on each
// connection, closes it after, and returns the port.
func serveLocal(t *testing.T, handle func(net.Conn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestAgentEchoesThroughTheHub(t *testing.T) {
	r := newReflector(t)
	echo := echoListener(t)
	runAgent(t, r.config(echo), fastRetry, testLogger(t))
	st := r.waitConnected(t, time.Time{})

	if !slices.Equal(st.Ports, []uint16{echo}) {
		t.Errorf("declared ports %v, want [%d]", st.Ports, echo)
	}
	if st.AgentVersion != "reflector-agent/"+Version {
		t.Errorf("agent version %q", st.AgentVersion)
	}
	if st.Properties["deviceName"] != "Pump 17" {
		t.Errorf("properties %v, want deviceName Pump 17", st.Properties)
	}

	conn, err := r.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	msg := bytes.Repeat([]byte("hello, device "), 20000) // several smux frames
	go func() {
		conn.Write(msg)
		conn.(interface{ CloseWrite() error }).CloseWrite() // half-close: the echo must still come back
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("echo: got %d bytes, want %d", len(got), len(msg))
	}
}

func TestAgentAnswersRefusedForAClosedPort(t *testing.T) {
	r := newReflector(t)
	closed := closedPort(t)
	runAgent(t, r.config(closed), fastRetry, nil)
	r.waitConnected(t, time.Time{})

	_, err := r.hub.Dial(context.Background(), testDevice, closed, netip.Addr{})
	if !errors.Is(err, tunnel.ErrRefused) {
		t.Fatalf("Dial of a closed port: %v, want ErrRefused", err)
	}
	var oe *tunnel.OpenError
	if !errors.As(err, &oe) || !strings.Contains(oe.Message, strconv.Itoa(int(closed))) {
		t.Errorf("refusal message %v, want one naming the port", err)
	}
}

func TestAgentReconnectsAfterTheReflectorDropsTheTunnel(t *testing.T) {
	r := newReflector(t)
	echo := echoListener(t)
	runAgent(t, r.config(echo), fastRetry, testLogger(t))
	first := r.waitConnected(t, time.Time{})

	r.hub.Disconnect(testDevice)
	r.waitConnected(t, first.ConnectedSince)

	conn, err := r.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial after reconnect: %v", err)
	}
	defer conn.Close()
	echoOnce(t, conn, "again")
}

func echoOnce(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v; want %q", buf, err, msg)
	}
	conn.SetDeadline(time.Time{})
}

func TestAgentWithWrongSecretWaitsTheUnauthorizedDelay(t *testing.T) {
	r := newReflector(t)
	cfg := r.config(echoListener(t))
	cfg.Secret = "wrong"
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	runAgent(t, cfg, fastRetry, logger)

	waitFor(t, "three attempts", func() bool { return len(r.attemptTimes()) >= 3 })
	at := r.attemptTimes()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < fastRetry.UnauthorizedDelay {
			t.Errorf("attempt %d came %v after the previous 401, want ≥ %v", i+1, gap, fastRetry.UnauthorizedDelay)
		}
	}
	if _, ok := r.hub.Status(testDevice); ok {
		t.Error("device connected with a wrong secret")
	}
	if n := strings.Count(logs.String(), "device credentials refused (401); waiting"); n != 1 {
		t.Errorf("401 logged %d times over %d attempts, want once:\n%s", n, len(at), logs.String())
	}
}

func TestAgentShutdownClosesOpenStreams(t *testing.T) {
	r := newReflector(t)
	echo := echoListener(t)
	stop := runAgent(t, r.config(echo), fastRetry, nil)
	r.waitConnected(t, time.Time{})
	conn, err := r.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	echoOnce(t, conn, "before shutdown")

	stop() // fails the test unless Run returns nil promptly
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("stream still open after the agent stopped")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("stream not closed within 5s of the agent stopping")
	}
}

func TestAgentClosesIdleLocalConnections(t *testing.T) {
	r := newReflector(t)
	echo := echoListener(t)
	cfg := r.config(echo)
	cfg.LocalIdleTimeout = 300 * time.Millisecond // timing: TestIdleConnClosesAfterTheTimeout
	runAgent(t, cfg, fastRetry, nil)
	r.waitConnected(t, time.Time{})
	conn, err := r.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	echoOnce(t, conn, "ping")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle stream not closed: %v", err)
	}
}

func TestAgentRefusesAWrongFingerprint(t *testing.T) {
	r := newReflector(t)
	cfg := r.config(80)
	cfg.Fingerprint = "sha256:" + strings.Repeat("ab", 32)
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.dial(context.Background()); !errors.Is(err, errFingerprint) {
		t.Fatalf("dial with a wrong pin: %v, want the fingerprint error", err)
	}
	if n := len(r.attemptTimes()); n != 0 {
		t.Errorf("credentials sent %d times to an unpinned server", n)
	}
}

func TestAgentVerifiesTheChainWithoutAPin(t *testing.T) {
	r := newReflector(t)
	cfg := r.config(80)
	cfg.Fingerprint = ""
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ws, err := a.dial(context.Background()); err == nil {
		ws.Close()
		t.Fatal("dial trusted the test server's certificate without a CA file or pin")
	}

	// With the test certificate as CA file it verifies.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{caFile, filepath.Dir(caFile)} {
		cfg.CAFile = path
		a, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := a.dial(context.Background())
		if err != nil {
			t.Fatalf("dial with CA %s: %v", path, err)
		}
		ws.Close()
	}
}

func TestAgentConnectsThroughAConfiguredProxy(t *testing.T) {
	r := newReflector(t)
	echo := echoListener(t)
	proxy, proxyAuth := connectProxy(t)
	cfg := r.config(echo)
	host, port, _ := net.SplitHostPort(proxy)
	p, _ := strconv.Atoi(port)
	cfg.Proxy = &ProxyConfig{Host: host, Port: uint16(p), Username: "alice", Password: "pw"}
	runAgent(t, cfg, fastRetry, nil)
	r.waitConnected(t, time.Time{})

	if got, want := proxyAuth(), tunnel.BasicCredentials("alice", "pw"); got != want {
		t.Errorf("Proxy-Authorization %q, want %q", got, want)
	}
	conn, err := r.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	echoOnce(t, conn, "through the proxy")
}

// connectProxy runs a minimal CONNECT proxy and returns its address and the
// last Proxy-Authorization it saw.
func connectProxy(t *testing.T) (string, func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var auth string
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				mu.Lock()
				auth = req.Header.Get("Proxy-Authorization")
				mu.Unlock()
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { io.Copy(up, br); up.Close() }()
				io.Copy(c, up)
			})
		}
	})
	return ln.Addr().String(), func() string {
		mu.Lock()
		defer mu.Unlock()
		return auth
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAgentWaitsRetryAfterWhenTheReflectorThrottles: a 429 (a lockout) and
// a 503 (the reflector at its bound of pending handshakes, issue 16) with
// Retry-After are waited out, not retried after the agent's own backoff of
// milliseconds, and logged once.
func TestAgentWaitsRetryAfterWhenTheReflectorThrottles(t *testing.T) {
	for _, tc := range []struct {
		status int
		logged string
	}{
		{http.StatusTooManyRequests, "throttling this device's logins (429); waiting"},
		{http.StatusServiceUnavailable, "reflector is busy (503); waiting"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var attempts []time.Time
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				attempts = append(attempts, time.Now())
				mu.Unlock()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "come back in 1s", tc.status)
			}))
			defer srv.Close()
			cfg := Config{ReflectorURL: srv.URL, DeviceID: testDevice, Secret: testSecret, Ports: []uint16{80},
				Fingerprint: tunnel.Fingerprint(srv.Certificate().Raw)}
			var logs lockedBuffer
			runAgent(t, cfg, fastRetry, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

			waitFor(t, "a second attempt, logged", func() bool {
				return strings.Contains(logs.String(), `msg="connect failed"`)
			})
			mu.Lock()
			at := slices.Clone(attempts)
			mu.Unlock()
			if gap := at[1].Sub(at[0]); gap < time.Second {
				t.Errorf("attempt after %d with Retry-After: 1 came %v later, want ≥ 1s", tc.status, gap)
			}
			if n := strings.Count(logs.String(), tc.logged); n != 1 {
				t.Errorf("%d logged at Warn %d times over %d attempts, want once:\n%s", tc.status, n, len(at), logs.String())
			}
		})
	}
}

func TestAgentConnectsFromItsLocalAddr(t *testing.T) {
	r := newReflector(t)
	opts := fastRetry
	opts.LocalAddr = netip.MustParseAddr("127.0.0.9")
	runAgent(t, r.config(echoListener(t)), opts, testLogger(t))
	st := r.waitConnected(t, time.Time{})
	if host, _, _ := net.SplitHostPort(st.RemoteAddr); host != "127.0.0.9" {
		t.Errorf("the reflector saw the agent at %q, want 127.0.0.9", st.RemoteAddr)
	}
}
