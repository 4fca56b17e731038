package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

// The real WebTunnelAgent of macchina.io REMOTE (issue 9) against the
// reflector's WebTunnel endpoint (webtunnel.Server) on a real TLS
// listener, streams dialled through the hub as the proxy does. The routing
// in server/server.go is tested with the whole stack elsewhere.

const wtDomain = "00000000-0000-0000-0000-000000000000"

// wtRig is a TLS listener on 127.0.0.1 whose every WebTunnel upgrade goes
// to a WebTunnelServer, with devices authenticated by a fixed password.
type wtRig struct {
	hub     *tunnel.Hub
	addr    string
	refused sync.Map // device → *atomic.Int64: 401s answered
}

const wtPassword = "s3cret"

func newWTRig(t *testing.T, configure ...func(*webtunnel.Server)) *wtRig {
	t.Helper()
	rig := &wtRig{hub: tunnel.NewHub(testLogger(t))}
	ws := &webtunnel.Server{
		Hub: rig.hub,
		Authenticate: func(_ context.Context, _ netip.Addr, device, password string) error {
			if subtle.ConstantTimeCompare([]byte(password), []byte(wtPassword)) == 1 {
				return nil
			}
			n, _ := rig.refused.LoadOrStore(device, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			return tunnel.ErrUnauthorized
		},
		Domain: wtDomain,
		Logger: testLogger(t),
	}
	for _, f := range configure {
		f(ws)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{subSelfSigned(t, "127.0.0.1")},
		NextProtos:   []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if webtunnel.IsAgentUpgrade(r) {
			ws.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		rig.hub.Close() // tunnels are hijacked: srv.Close does not end them
		srv.Close()
	})
	rig.addr = ln.Addr().String()
	return rig
}

func (rig *wtRig) refusals(device string) int64 {
	n, ok := rig.refused.Load(device)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// wtAgentProperties is the agent's configuration for device, forwarding
// ports, with httpPort the first of them.
func wtAgentProperties(reflector, device, password string, ports ...uint16) string {
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = fmt.Sprint(p)
	}
	return strings.Join([]string{
		"webtunnel.deviceId = " + device,
		"webtunnel.domain = " + wtDomain,
		"webtunnel.reflectorURI = https://" + reflector,
		"webtunnel.username = ${webtunnel.deviceId}@${webtunnel.domain}",
		"webtunnel.password = " + password,
		"webtunnel.host = 127.0.0.1",
		"webtunnel.ports = " + strings.Join(list, ", "),
		fmt.Sprintf("webtunnel.httpPort = %d", ports[0]),
		"webtunnel.deviceName = Pump 17",
		"webtunnel.connectTimeout = 10",
		"tls.acceptUnknownCertificate = true",
		"tls.verification = none",
		"logging.loggers.root.level = information",
		"logging.loggers.root.channel = console",
		"logging.channels.console.class = ConsoleChannel",
		"",
	}, "\n")
}

// startWTAgent runs WebTunnelAgent with props until the test or benchmark
// ends, and returns its output so far, on demand. It skips when the agent
// cannot run here (skipUnlessCI).
func startWTAgent(t testing.TB, props string) func() string {
	t.Helper()
	bin := macchinaTool(t, "WebTunnelAgent")
	cfg := filepath.Join(t.TempDir(), "agent.properties")
	if err := os.WriteFile(cfg, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "--config-file="+cfg)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		skipUnlessCI(t, "WebTunnelAgent cannot run here: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("WebTunnelAgent output:\n%s", out.String())
		}
	})
	return out.String
}

// waitWTOnline waits for device's tunnel to register.
func waitWTOnline(t *testing.T, hub *tunnel.Hub, device string, output func() string) tunnel.DeviceStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, ok := hub.Status(device); ok {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not connected within 20 s; its output:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wtEchoThrough(t *testing.T, c net.Conn, n int) {
	t.Helper()
	sent := sha256.New()
	done := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(uint64(n), 2))
		buf := make([]byte, 64<<10)
		for left := n; left > 0; {
			k := min(left, len(buf))
			for i := range buf[:k] {
				buf[i] = byte(r.Uint32())
			}
			sent.Write(buf[:k])
			if _, err := c.Write(buf[:k]); err != nil {
				done <- err
				return
			}
			left -= k
		}
		done <- c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil {
		t.Errorf("read the echo: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("write: %v", err)
	}
	if m != int64(n) || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Errorf("echoed %d of %d bytes; checksums equal: %v", m, n, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
	}
}

func TestWebTunnelAgentConnectsAndServesChannels(t *testing.T) {
	rig := newWTRig(t)
	echo := echoServer(t)
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pump") }))
	output := startWTAgent(t, wtAgentProperties(rig.addr, "dev1", wtPassword, web, echo))
	st := waitWTOnline(t, rig.hub, "dev1", output)
	// The agent keeps webtunnel.ports in a std::set: targetPorts comes sorted.
	if st.Kind != webtunnel.Kind || fmt.Sprint(st.Ports) != fmt.Sprint(slices.Sorted(slices.Values([]uint16{web, echo}))) ||
		st.Properties["deviceName"] != "Pump 17" || st.Properties["httpPort"] != fmt.Sprint(web) {
		t.Errorf("device status: kind %q ports %v properties %v", st.Kind, st.Ports, st.Properties)
	}
	if !strings.HasPrefix(st.AgentVersion, "WebTunnelAgent/") {
		t.Errorf("agent version %q", st.AgentVersion)
	}
	dial := func(port uint16) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return rig.hub.Dial(ctx, "dev1", port, netip.Addr{})
	}

	t.Run("16MiBEchoBothWays", func(t *testing.T) {
		c, err := dial(echo)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wtEchoThrough(t, c, 16<<20)
	})
	t.Run("20ChannelsAtOnce", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				c, err := dial(echo)
				if err != nil {
					t.Errorf("channel %d: %v", i, err)
					return
				}
				defer c.Close()
				wtEchoThrough(t, c, 512<<10+i)
			})
		}
		wg.Wait()
	})
	t.Run("WebPort", func(t *testing.T) {
		c, err := dial(web)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.0\r\nHost: pump\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !bytes.HasSuffix(b, []byte("pump")) {
			t.Errorf("web port answered %q", b)
		}
	})
	t.Run("PortOutsideWebtunnelPorts", func(t *testing.T) {
		if _, err := dial(closedPort(t)); !errors.Is(err, tunnel.ErrPortNotAllowed) {
			t.Errorf("got %v, want ErrPortNotAllowed", err)
		}
	})
	t.Run("RefusedDevicePort", func(t *testing.T) {
		// A port in webtunnel.ports where nothing listens: the agent's
		// FAULT 3 becomes ErrRefused.
		rig2 := newWTRig(t)
		closed := closedPort(t)
		out := startWTAgent(t, wtAgentProperties(rig2.addr, "dev3", wtPassword, echo, closed))
		waitWTOnline(t, rig2.hub, "dev3", out)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := rig2.hub.Dial(ctx, "dev3", closed, netip.Addr{}); !errors.Is(err, tunnel.ErrRefused) {
			t.Errorf("got %v, want ErrRefused", err)
		}
	})
}

func TestWebTunnelAgentWithAWrongPasswordGets401AndRetries(t *testing.T) {
	rig := newWTRig(t)
	echo := echoServer(t)
	output := startWTAgent(t, wtAgentProperties(rig.addr, "dev2", "wrong", echo))
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for rig.refusals("dev2") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no attempt within 20 s; agent output:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := time.Since(start)
	for rig.refusals("dev2") < 2 {
		if time.Since(start) > 90*time.Second {
			t.Fatalf("agent did not retry within 90 s; agent output:\n%s", output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("first attempt after %v, retry after %v", first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if _, ok := rig.hub.Status("dev2"); ok {
		t.Error("device with a wrong password is online")
	}
}

func TestWebTunnelAgentUserWhoStopsReadingLosesOnlyTheirChannel(t *testing.T) {
	rig := newWTRig(t, func(s *webtunnel.Server) { s.StallTimeout = time.Second })
	echo := echoServer(t)
	deviceEnd := make(chan error, 1)
	var sent atomic.Int64
	source := serveTCP(t, func(c net.Conn) { // a device port that streams
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				deviceEnd <- err
				return
			}
		}
	})
	output := startWTAgent(t, wtAgentProperties(rig.addr, "dev4", wtPassword, echo, source))
	waitWTOnline(t, rig.hub, "dev4", output)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stuck, err := rig.hub.Dial(ctx, "dev4", source, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	// Nobody reads stuck. The reflector queues 256 KiB, holds the tunnel
	// for the stall timeout, then closes the channel with ERROR: the agent
	// closes its socket to the device port.
	select {
	case <-deviceEnd:
	case <-time.After(30 * time.Second):
		t.Fatalf("device port still open after 30 s (%d bytes sent); agent output:\n%s", sent.Load(), output())
	}
	stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, stuck)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stalled channel: read %d bytes and %v, want its error", n, err)
	}
	t.Logf("device sent %d bytes before its socket was closed", sent.Load())
	c, err := rig.hub.Dial(ctx, "dev4", echo, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wtEchoThrough(t, c, 1<<20)
}

func TestWebTunnelAgentIdleTunnelOutlivesItsKeepAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 45 s")
	}
	// A keep-alive of 10 s answered to the agent: an idle tunnel lives on
	// the agent's pings only, and would be dead after 40 s without them.
	rig := newWTRig(t, func(s *webtunnel.Server) { s.MaxKeepAlive = 10 * time.Second })
	echo := echoServer(t)
	output := startWTAgent(t, wtAgentProperties(rig.addr, "dev5", wtPassword, echo))
	first := waitWTOnline(t, rig.hub, "dev5", output)
	time.Sleep(45 * time.Second)
	st, ok := rig.hub.Status("dev5")
	if !ok || !st.ConnectedSince.Equal(first.ConnectedSince) {
		t.Fatalf("idle tunnel did not survive 45 s (online %v); agent output:\n%s", ok, output())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := rig.hub.Dial(ctx, "dev5", echo, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wtEchoThrough(t, c, 64<<10)
}

// TestWebTunnelAgentDeviceThroughTheReflector connects the real
// WebTunnelAgent to the whole reflector, with a password adopted with
// AddDeviceWithSecret, and reaches it as users do: CONNECT (64 MiB each way,
// checksummed), absolute-form and subdomain GETs of its web port, a port
// outside webtunnel.ports refused with 403.
func TestWebTunnelAgentDeviceThroughTheReflector(t *testing.T) {
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	s.addGroups("plant-a")
	if err := s.srv.Store().AddDeviceWithSecret(store.Device{ID: "pump-17", Groups: []string{"plant-a"}}, "s3cret"); err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "webtunnel device page %s", r.URL.Path)
	}))
	out := startWTAgent(t, wtAgentProperties(s.srv.Addr().String(), "pump-17", "s3cret", web, echo))
	st := waitWTOnline(t, s.srv.Hub(), "pump-17", out)
	if st.Kind != "webtunnel" {
		t.Fatalf("kind %q", st.Kind)
	}

	conn := s.proxyConn()
	defer conn.Close()
	resp, br := s.connect(conn, basic("alice", "alice-pass"), fmt.Sprintf("pump-17.localhost:%d", echo))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	if br.Buffered() != 0 {
		t.Fatal("bytes before any were sent")
	}
	wtEchoThrough(t, conn, 64<<20)

	get, err := s.proxyClient("alice", "alice-pass").Get("http://pump-17.localhost/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(get.Body)
	get.Body.Close()
	if get.StatusCode != http.StatusOK || string(body) != "webtunnel device page /x" {
		t.Fatalf("absolute-form: %d %q", get.StatusCode, body)
	}

	tok, _, err := s.srv.Store().CreateToken(store.Token{User: "alice", Name: "wt"})
	if err != nil {
		t.Fatal(err)
	}
	sub := subGet(t, subClient(s.srv.Addr().String(), s.pool), subURL(s.srv.Addr(), "pump-17", "/y"), tok)
	body, _ = io.ReadAll(sub.Body)
	if sub.StatusCode != http.StatusOK || string(body) != "webtunnel device page /y" {
		t.Fatalf("subdomain: %d %q", sub.StatusCode, body)
	}

	outside := s.proxyConn()
	defer outside.Close()
	if resp, _ := s.connect(outside, basic("alice", "alice-pass"), fmt.Sprintf("pump-17.localhost:%d", closedPort(t))); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("port outside webtunnel.ports: %d, want 403", resp.StatusCode)
	}
}
