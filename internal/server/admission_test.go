package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// heldGate holds every argon2id check that takes a slot of the store's
// gate until release, counting those that entered.
type heldGate struct {
	entered atomic.Int32
	unblock chan struct{}
	once    sync.Once
}

func holdArgon(t *testing.T, st *store.Store) *heldGate {
	g := &heldGate{unblock: make(chan struct{})}
	st.SetArgonHook(func() {
		g.entered.Add(1)
		<-g.unblock
	})
	t.Cleanup(g.release)
	return g
}

func (g *heldGate) release() { g.once.Do(func() { close(g.unblock) }) }

// addAdopted adds devices with adopted secrets "pw-<id>".
func addAdopted(t *testing.T, st *store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := st.AddDeviceWithSecret(store.Device{ID: id}, "pw-"+id); err != nil {
			t.Fatal(err)
		}
	}
}

// upgradeRequest is an agent's upgrade of either wire, as sent on the wire.
func upgradeRequest(wire, device, body string) string {
	var b strings.Builder
	switch wire {
	case "ours":
		b.WriteString("GET /tunnel/v1 HTTP/1.1\r\nSec-WebSocket-Protocol: reflector.v1\r\nX-Reflector-Ports: 22\r\n")
		fmt.Fprintf(&b, "Authorization: %s\r\n", tunnel.BasicCredentials(device, "pw-"+device))
	case "webtunnel":
		b.WriteString("POST / HTTP/1.1\r\nSec-WebSocket-Protocol: com.appinf.webtunnel.server/1.0\r\nX-PTTH-Set-Property: device;targetPorts=22\r\n")
		fmt.Fprintf(&b, "Authorization: %s\r\n", tunnel.BasicCredentials(device+"@example", "pw-"+device))
	}
	b.WriteString("Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// sendUpgrade opens a TLS connection to s and sends an agent's upgrade.
func sendUpgrade(t *testing.T, s *Server, wire, device string) net.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, upgradeRequest(wire, device, "")); err != nil {
		t.Fatal(err)
	}
	return conn
}

// answer reads the answer to an upgrade within wait.
func answer(t *testing.T, conn net.Conn, wait time.Duration) *http.Response {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", wait, err)
	}
	resp.Body.Close()
	return resp
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scrape reads the server's /metrics.
func scrape(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metric returns the value of the sample line name (with its labels) in text.
func metric(t *testing.T, text, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no sample %s in:\n%s", name, text)
	}
	v, _ := strconv.ParseInt(m[1], 10, 64)
	return v
}

// TestAgentsBeyondThePendingBoundAre503AtOnce: with two handshakes held in
// the argon2id gate and the bound at 2, a third agent of either wire is
// answered 503 with Retry-After at once, without any authentication work;
// /metrics shows the pending handshakes and the refusals. Once the gate
// frees, the two held ones are upgraded.
func TestAgentsBeyondThePendingBoundAre503AtOnce(t *testing.T) {
	s := runServer(t, Config{PendingHandshakes: 2, MetricsListen: "127.0.0.1:0"})
	addAdopted(t, s.Store(), "held-1", "held-2", "late-1", "late-2")
	gate := holdArgon(t, s.Store())
	runs := s.Store().ArgonStats().Runs
	held := []net.Conn{sendUpgrade(t, s, "ours", "held-1"), sendUpgrade(t, s, "webtunnel", "held-2")}
	waitUntil(t, "two handshakes pending", func() bool { return s.admission.pending.Load() == 2 })
	waitUntil(t, "the gate holds or queues both", func() bool {
		st := s.Store().ArgonStats()
		return int64(gate.entered.Load())+st.Waiting == 2
	})

	for _, late := range []struct{ wire, device string }{{"ours", "late-1"}, {"webtunnel", "late-2"}} {
		start := time.Now()
		resp := answer(t, sendUpgrade(t, s, late.wire, late.device), 5*time.Second)
		took := time.Since(start)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s agent beyond the bound: %s, want 503", late.wire, resp.Status)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("%s agent beyond the bound: Retry-After %q, want 1 to 60 seconds", late.wire, resp.Header.Get("Retry-After"))
		}
		if took > 2*time.Second {
			t.Errorf("%s agent beyond the bound answered after %v, want at once", late.wire, took)
		}
	}
	st := s.Store().ArgonStats()
	if n := int64(gate.entered.Load()) + st.Waiting; n != 2 || st.Runs != runs {
		t.Errorf("refused agents were authenticated: %d checks in or at the gate, %d computations, want 2 and 0",
			n, st.Runs-runs)
	}
	text := scrape(t, s)
	for name, want := range map[string]int64{
		"reflector_agent_handshakes_pending":       2,
		"reflector_agent_handshakes_pending_max":   2,
		"reflector_agent_handshakes_refused_total": 2,
		"reflector_argon2id_waiting":               st.Waiting,
	} {
		if got := metric(t, text, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}

	gate.release()
	for i, conn := range held {
		if resp := answer(t, conn, 10*time.Second); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("held handshake %d after the gate freed: %s, want 101", i+1, resp.Status)
		}
	}
	waitUntil(t, "no handshake pending", func() bool { return s.admission.pending.Load() == 0 })
	// The tunnel registers just after its 101 is written: wait for it.
	waitUntil(t, "the admitted agent of our wire connected", func() bool {
		return metric(t, scrape(t, s), "reflector_devices_connected{kind=\"reflector.v1\"}") == 1
	})
}

// TestAnAgentThatHangsUpLeavesTheArgonQueueUnhashed is the end of the
// storm of issue 16 over a real socket: an agent queued behind a full
// argon2id gate closes its connection (it timed out), net/http ends its
// request's context, and its check leaves the queue without a computation.
func TestAnAgentThatHangsUpLeavesTheArgonQueueUnhashed(t *testing.T) {
	s := runServer(t, Config{PendingHandshakes: 100})
	slots := runtime.GOMAXPROCS(0) // the gate's size, taken at Open
	var holders []string
	for i := range slots {
		holders = append(holders, fmt.Sprintf("held-%d", i))
	}
	addAdopted(t, s.Store(), append(holders, "gone")...)
	gate := holdArgon(t, s.Store())
	var held []net.Conn
	for _, id := range holders {
		held = append(held, sendUpgrade(t, s, "ours", id))
	}
	waitUntil(t, "every slot of the gate held", func() bool { return int(gate.entered.Load()) == slots })
	gone := sendUpgrade(t, s, "ours", "gone")
	waitUntil(t, "the last agent queued at the gate", func() bool { return s.Store().ArgonStats().Waiting == 1 })
	gone.Close()
	waitUntil(t, "the agent that hung up left the queue", func() bool { return s.Store().ArgonStats().Waiting == 0 })

	runs := s.Store().ArgonStats().Runs
	gate.release()
	for i, conn := range held {
		if resp := answer(t, conn, 10*time.Second); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("held handshake %d: %s, want 101", i+1, resp.Status)
		}
	}
	waitUntil(t, "no handshake pending", func() bool { return s.admission.pending.Load() == 0 })
	if n := s.Store().ArgonStats().Runs - runs; n != uint64(slots) {
		t.Errorf("%d argon2id computations after the gate freed, want %d: the agent that hung up was checked", n, slots)
	}
}

// TestAnAgentUpgradeWithABodyIs400: net/http watches for a client hanging
// up only once the body is read, so an upgrade with a body is refused
// before it can wait anywhere.
func TestAnAgentUpgradeWithABodyIs400(t *testing.T) {
	s := runServer(t, Config{})
	addAdopted(t, s.Store(), "pump-1")
	for _, wire := range []string{"ours", "webtunnel"} {
		conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, upgradeRequest(wire, "pump-1", "hello"))
		if resp := answer(t, conn, 5*time.Second); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s upgrade with a body: %s, want 400", wire, resp.Status)
		}
		conn.Close()
	}
	if n := s.Store().ArgonStats().Runs; n != 1 { // the secret's hashing
		t.Errorf("%d argon2id computations, want 1 (adding the device)", n)
	}
}

// TestOurAgentWaitsTheRetryAfterOf503: our agent, refused with 503 and
// Retry-After by the real reflector's admission, comes back after the
// Retry-After (at least a second), not after its own backoff of
// milliseconds, and connects once there is room.
func TestOurAgentWaitsTheRetryAfterOf503(t *testing.T) {
	s := runServer(t, Config{PendingHandshakes: 1})
	addAdopted(t, s.Store(), "held", "pump-1")
	gate := holdArgon(t, s.Store())
	held := sendUpgrade(t, s, "ours", "held")
	waitUntil(t, "one handshake pending", func() bool { return s.admission.pending.Load() == 1 })

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	a, err := agent.NewWithOptions(agent.Config{
		ReflectorURL: "https://" + s.Addr().String(),
		DeviceID:     "pump-1",
		Secret:       "pw-pump-1",
		Ports:        []uint16{22},
		Fingerprint:  s.Fingerprint(),
	}, logger, agent.Options{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitUntil(t, "the agent refused once", func() bool { return s.admission.refused.Load() >= 1 })
	time.Sleep(1500 * time.Millisecond)
	// Retry-After: 1 and up to a quarter more: a second try within 1.5 s
	// at most. Its own backoff would have tried some hundred times.
	if n := s.admission.refused.Load(); n > 2 {
		t.Errorf("agent refused %d times in 1.5 s after 503 with Retry-After: 1, want at most 2", n)
	}
	gate.release()
	answer(t, held, 10*time.Second)
	waitUntil(t, "the agent connected", func() bool { _, ok := s.Hub().Status("pump-1"); return ok })
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "reflector is busy (503); waiting") {
		t.Errorf("the agent did not log the 503:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRefusedAgentsAreToldTheirTurn: each agent refused is told to come
// back when its place in the queue behind the pending handshakes comes,
// at the rate handshakes finish, so a storm returns spread over time;
// within one second at least and a minute at most.
func TestRefusedAgentsAreToldTheirTurn(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := newAdmission(100, 50, nil) // 50 handshakes a second assumed: 20 ms each
	a.now = func() time.Time { return now }
	a.pending.Store(100)
	// 100 pending take 2 s: the first refused comes back then, the next
	// 20 ms later, and so on.
	for i, want := range []time.Duration{2 * time.Second, 2020 * time.Millisecond, 2040 * time.Millisecond} {
		if got, _ := a.retryAfter(); got != want {
			t.Errorf("refusal %d: retry after %v, want %v", i+1, got, want)
		}
	}
	for range 3000 {
		a.retryAfter()
	}
	if got, _ := a.retryAfter(); got != maxRetryAfter {
		t.Errorf("after 3,000 refusals: retry after %v, want the cap %v", got, maxRetryAfter)
	}
	// Time passes and the queue drains: the turns come nearer again.
	now = now.Add(time.Hour)
	a.pending.Store(0)
	if got, _ := a.retryAfter(); got != minRetryAfter {
		t.Errorf("with nothing pending: retry after %v, want the floor %v", got, minRetryAfter)
	}
	// A measured rate above the assumed one shortens the turns.
	for range 1000 {
		a.finished() // pending goes negative here; only the rate matters
	}
	a.pending.Store(100)
	a.nextRetry = time.Time{}
	if got, _ := a.retryAfter(); got != minRetryAfter {
		t.Errorf("100 pending at 1,000 handshakes a second: retry after %v, want %v", got, minRetryAfter)
	}
}

func TestRateMeterCountsTheLastSeconds(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1_000_000, 0)
	if r := m.rate(t0); r != 0 {
		t.Errorf("empty meter: %v per second", r)
	}
	for i := range 300 {
		m.add(t0.Add(time.Duration(i) * 10 * time.Millisecond)) // 100 a second for 3 s
	}
	if r := m.rate(t0.Add(3 * time.Second)); r < 95 || r > 105 {
		t.Errorf("100 a second for 3 s: %v per second", r)
	}
	if r := m.rate(t0.Add(time.Minute)); r != 0 {
		t.Errorf("a minute later: %v per second, want 0", r)
	}
}

func TestDefaultBoundFinishesWithinTheBudget(t *testing.T) {
	rate, bound := handshakeCapacity(7*time.Millisecond+500*time.Microsecond, 2)
	if rate < 230 || rate > 236 { // 2 CPUs / 8.5 ms
		t.Errorf("rate %v per second, want 2/8.5ms", rate)
	}
	if took := time.Duration(float64(bound) / rate * float64(time.Second)); took > handshakeBudget || took < handshakeBudget-50*time.Millisecond {
		t.Errorf("bound %d takes %v to finish, want just within %v", bound, took, handshakeBudget)
	}
	if _, bound := handshakeCapacity(time.Second, 1); bound != minPendingHandshakes {
		t.Errorf("a slow machine's bound %d, want the floor %d", bound, minPendingHandshakes)
	}
}

// TestDescriptorLimitIsLoggedAndWarnedAbout: the limit is logged at start,
// with a warning when the devices, the pending bound and the headroom do
// not fit in it.
func TestDescriptorLimitIsLoggedAndWarnedAbout(t *testing.T) {
	for _, tc := range []struct {
		limit         uint64
		devices, bnd  int
		level, needle string
	}{
		{65536, 10000, 500, "INFO", "limit=65536 devices=10000"},
		{1024, 10000, 500, "WARN", "need=11524"},
		{11524, 10000, 500, "INFO", "limit=11524"},
		{11523, 10000, 500, "WARN", "need=11524"},
		{0, 10, 64, "WARN", "unknown"},
	} {
		var buf bytes.Buffer
		checkDescriptors(slog.New(slog.NewTextHandler(&buf, nil)), tc.limit, tc.devices, tc.bnd)
		if line := buf.String(); !strings.Contains(line, "level="+tc.level) || !strings.Contains(line, tc.needle) {
			t.Errorf("limit %d, %d devices: logged %q, want %s with %q", tc.limit, tc.devices, line, tc.level, tc.needle)
		}
	}
}

// TestMetricsShowTheDescriptorLimit: process_max_fds is the soft limit the
// kernel reports in /proc/self/limits.
func TestMetricsShowTheDescriptorLimit(t *testing.T) {
	limits, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Skip("no /proc/self/limits here")
	}
	m := regexp.MustCompile(`(?m)^Max open files\s+(\d+)`).FindSubmatch(limits)
	if m == nil {
		t.Fatalf("no open files limit in:\n%s", limits)
	}
	want, _ := strconv.ParseInt(string(m[1]), 10, 64)
	s := runServer(t, Config{MetricsListen: "127.0.0.1:0"})
	text := scrape(t, s)
	if got := metric(t, text, "process_max_fds"); got != want {
		t.Errorf("process_max_fds %d, want %d", got, want)
	}
	if n := metric(t, text, "process_open_fds"); n < 4 || n >= want {
		t.Errorf("process_open_fds %d: not a count of this process's descriptors", n)
	}
}
