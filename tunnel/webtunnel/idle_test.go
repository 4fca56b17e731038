//go:build unix

package webtunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// What an idle WebTunnelAgent's tunnel costs the reflector (issue 16),
// measured in this process with the simulated agents in another one, so
// that the heap, stacks and goroutines counted are the server's alone.
//
//	go test ./tunnel/webtunnel -run '^$' -bench IdleTunnels -benchtime 1x
//	REFLECTOR_WT_IDLE_N=10000 go test ./tunnel/webtunnel -run '^$' -bench IdleTunnels -benchtime 1x
//
// REFLECTOR_WT_IDLE_PROFILE=file writes the server's heap profile (with
// -memprofilerate=1 for every object) and file.goroutines once all agents
// are connected.

// Environment of the swarm process (TestMain): the reflector's address, how
// many agents, how often each pings, and the server certificate.
const (
	swarmAddrEnv = "REFLECTOR_WT_SWARM_ADDR"
	swarmNEnv    = "REFLECTOR_WT_SWARM_N"
	swarmPingEnv = "REFLECTOR_WT_SWARM_PING"
	swarmCertEnv = "REFLECTOR_WT_SWARM_CERT"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(swarmAddrEnv); addr != "" {
		if err := runSwarm(addr); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runSwarm is the swarm process: it connects its agents as WebTunnelAgent
// does (TLS, a POST upgrade with the agent's headers), prints "ready", then
// pings each agent's tunnel once a period, as the agent does after its
// keep-alive of silence, and reads the pongs, until its standard input
// closes.
func runSwarm(addr string) error {
	n, err := strconv.Atoi(os.Getenv(swarmNEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", swarmNEnv, err)
	}
	ping, _ := time.ParseDuration(os.Getenv(swarmPingEnv))
	certPEM, err := os.ReadFile(os.Getenv(swarmCertEnv))
	if err != nil {
		return fmt.Errorf("read certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	conf := &tls.Config{RootCAs: pool, ServerName: "example.com"}

	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := swarmAgent(addr, conf, fmt.Sprintf("swarm-%d", i))
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Println("ready")

	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	if ping <= 0 {
		<-stop
		return nil
	}
	// Masked ping with a payload ("keep"): mask key 0 leaves it as is.
	frame := []byte{0x89, 0x84, 0, 0, 0, 0, 'k', 'e', 'e', 'p'}
	const tick = 10 * time.Millisecond
	perTick := max(1, int(int64(n)*int64(tick)/int64(ping)))
	t := time.NewTicker(tick)
	defer t.Stop()
	for next := 0; ; {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		for range perTick {
			conns[next].Write(frame)
			next = (next + 1) % n
		}
	}
}

// swarmAgent connects one simulated agent and reads its tunnel until it
// ends.
func swarmAgent(addr string, conf *tls.Config, device string) (net.Conn, error) {
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", device, err)
	}
	h := agentHeader(device+"@00000000-0000-0000-0000-000000000000", "s3cret")
	h.Set("User-Agent", "WebTunnelAgent/2.5.0 (Linux/6.1; x86_64) POCO/1.11.10")
	h.Set("Sec-WebSocket-Protocol", ServerSubprotocol)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Version", "13")
	h.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/"}, Host: addr, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("agent %s: upgrade: %w", device, err)
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("agent %s: upgrade answered %v, %v", device, resp, err)
	}
	go io.Copy(io.Discard, br)
	return c, nil
}

// idleCost is what the server holds per connected idle tunnel.
type idleCost struct {
	heap, stack, goroutines float64 // bytes, bytes, count
}

// idleServer is a Server behind a real TLS listener that lets every agent
// in, and a swarm of n agents connected to it.
type idleServer struct {
	srv   *Server
	ts    *httptest.Server
	swarm *exec.Cmd
	stdin io.Closer
}

// settle collects garbage until the heap stops shrinking and returns the
// live heap, the stacks in use and the goroutines.
func settle() (heap, stack uint64, goroutines int) {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// connectIdle starts a server and n agents pinging once every ping (none
// if zero), and returns what the server holds per tunnel once all are
// connected.
func connectIdle(tb testing.TB, n int, ping time.Duration) (*idleServer, idleCost) {
	tb.Helper()
	s := &Server{
		Hub:          tunnel.NewHub(nil),
		Authenticate: func(context.Context, netip.Addr, string, string) error { return nil },
	}
	ts := httptest.NewUnstartedServer(s)
	ts.StartTLS()
	tb.Cleanup(ts.Close)
	tb.Cleanup(s.Hub.Close)
	certFile := filepath.Join(tb.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		tb.Fatal(err)
	}
	heap0, stack0, g0 := settle()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		swarmAddrEnv+"="+ts.Listener.Addr().String(),
		swarmNEnv+"="+strconv.Itoa(n),
		swarmPingEnv+"="+ping.String(),
		swarmCertEnv+"="+certFile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	is := &idleServer{srv: s, ts: ts, swarm: cmd, stdin: stdin}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		tb.Fatalf("swarm: %q", line)
	}
	deadline := time.Now().Add(30 * time.Second)
	for is.connected() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d agents registered after 30 s", is.connected(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the last upgrades' handlers return
	heap1, stack1, g1 := settle()
	if f := os.Getenv("REFLECTOR_WT_IDLE_PROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.Lookup("heap").WriteTo(out, 0)
		out.Close()
		g, _ := os.Create(f + ".goroutines")
		pprof.Lookup("goroutine").WriteTo(g, 1)
		g.Close()
	}
	return is, idleCost{
		heap:       float64(int64(heap1)-int64(heap0)) / float64(n),
		stack:      float64(int64(stack1)-int64(stack0)) / float64(n),
		goroutines: float64(g1-g0) / float64(n),
	}
}

func (is *idleServer) connected() int {
	kinds, _ := is.srv.Hub.Metrics()
	for _, k := range kinds {
		if k.Kind == Kind {
			return int(k.Connected)
		}
	}
	return 0
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleTunnels connects REFLECTOR_WT_IDLE_N (2,000) simulated
// WebTunnelAgents over real TLS to a Server and reports, per idle tunnel,
// the server's live heap, goroutine stacks and goroutines; then, with every
// agent pinging once a second for REFLECTOR_WT_IDLE_WINDOW (5 s), the CPU
// the server spends on a ping and what 10,000 agents pinging every 60 s
// (the keep-alive the server answers by default) would cost.
func BenchmarkIdleTunnels(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("REFLECTOR_WT_IDLE_N")); err == nil && v > 0 {
		n = v
	}
	window := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("REFLECTOR_WT_IDLE_WINDOW")); err == nil && v > 0 {
		window = v
	}
	const ping = time.Second
	_, cost := connectIdle(b, n, ping)
	b.ReportMetric(cost.heap, "heap-B/tunnel")
	b.ReportMetric(cost.stack, "stack-B/tunnel")
	b.ReportMetric(cost.goroutines, "goroutines/tunnel")

	start, cpu0 := time.Now(), cpuTime(b)
	time.Sleep(window)
	cpu, wall := cpuTime(b)-cpu0, time.Since(start)
	pings := float64(n) * wall.Seconds() / ping.Seconds()
	perPing := float64(cpu.Microseconds()) / pings
	b.ReportMetric(perPing, "cpu-µs/ping")
	b.ReportMetric(perPing*10000/60/1e6*100, "core-%@10k/60s")
}

// Budgets of what an idle tunnel may hold on the server. Issue 16 allows
// 64 KiB of resident memory per idle WebTunnel device; the garbage
// collector (GOGC=100) lets the heap grow to twice what is live, so the live
// cost must stay well under 32 KiB. Before the tunnel left net/http's
// goroutine and gorilla's buffers it was 26.2 KiB of heap and a 16 KiB
// stack; measured after: 9.7 KiB of heap and a 4 KiB stack (8 KiB under
// the race detector, which CI runs).
const (
	idleHeapBudget  = 13 << 10
	idleStackBudget = 8<<10 + raceStack
)

// TestIdleTunnelCostsOneGoroutineAndLittleMemory: a connected WebTunnel
// agent that sends nothing costs the server one goroutine, the tunnel's
// reader, and no more heap and stack than the budgets.
// REFLECTOR_WT_IDLE_PROFILE shows where it goes when this fails.
func TestIdleTunnelCostsOneGoroutineAndLittleMemory(t *testing.T) {
	const n = 100
	_, cost := connectIdle(t, n, 0)
	t.Logf("per idle tunnel: %.0f B heap, %.0f B stack, %.2f goroutines", cost.heap, cost.stack, cost.goroutines)
	if cost.goroutines > 1+3.0/n { // a few of the runtime's own may come and go
		t.Errorf("%.2f goroutines per idle tunnel, want 1", cost.goroutines)
	}
	if cost.heap > idleHeapBudget {
		t.Errorf("an idle tunnel holds %.0f B of heap, want at most %d", cost.heap, idleHeapBudget)
	}
	if cost.stack > idleStackBudget {
		t.Errorf("an idle tunnel's goroutine holds %.0f B of stack, want at most %d", cost.stack, idleStackBudget)
	}
}
