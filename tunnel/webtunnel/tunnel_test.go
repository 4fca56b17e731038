package webtunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
)

// Ports of the fake agent: what it does when the reflector opens a channel.
const (
	fakeEcho    = 7    // echoes every byte; answers CLOSE with CLOSE
	fakeSource  = 9    // sends 2,048-byte frames until the channel ends
	fakeSilent  = 5    // never answers the OPEN
	fakeFault   = 1000 // FAULT with code port-1000: 1002 is "not forwarded"
	fakeCodeMax = 1010
)

// fakeAgent speaks the WebTunnel frames over a real WebSocket to a
// Server, as WebTunnelAgent does.
type fakeAgent struct {
	t   *testing.T
	hub *tunnel.Hub
	ws  *websocket.Conn

	wmu sync.Mutex

	mu         sync.Mutex
	sources    map[uint16]chan struct{} // closed when the channel ends
	errors     map[uint16]Code          // ERROR frames received
	maxPayload int
	pongs      chan string
}

func testServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := &Server{
		Hub: tunnel.NewHub(nil),
		Authenticate: func(_ context.Context, _ netip.Addr, device, password string) error {
			if device == "dev1" && password == "s3cret" {
				return nil
			}
			return tunnel.ErrUnauthorized
		},
		ChannelQueue: 64 << 10,
		StallTimeout: 300 * time.Millisecond,
	}
	ts := httptest.NewTLSServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(s.Hub.Close)
	return s, ts
}

func agentHeader(user, password string) http.Header {
	h := http.Header{}
	h.Set("Authorization", tunnel.BasicCredentials(user, password))
	h.Add(HeaderProperty, "device;targetHost=127.0.0.1")
	h.Add(HeaderProperty, fmt.Sprintf("device;targetPorts=%d, %d %d,%d", fakeEcho, fakeSource, fakeSilent, fakeFault+2))
	h.Add(HeaderProperty, "device;httpPort=80")
	h.Add(HeaderProperty, `device;name="Pump \"17\""`)
	h.Set(HeaderKeepAlive, "300")
	return h
}

func startFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	s, ts := testServer(t)
	d := websocket.Dialer{
		TLSClientConfig: ts.Client().Transport.(*http.Transport).TLSClientConfig,
		Subprotocols:    []string{ServerSubprotocol},
	}
	url := "wss" + strings.TrimPrefix(ts.URL, "https") + "/"
	ws, resp, err := d.Dial(url, agentHeader("dev1@00000000-0000-0000-0000-000000000000", "s3cret"))
	if err != nil {
		t.Fatalf("agent upgrade: %v", err)
	}
	if got := resp.Header.Get(HeaderKeepAlive); got != "60" {
		t.Errorf("keep-alive answered %q, want 60 (the agent's 300 capped)", got)
	}
	a := &fakeAgent{t: t, hub: s.Hub, ws: ws, sources: map[uint16]chan struct{}{},
		errors: map[uint16]Code{}, pongs: make(chan string, 4)}
	ws.SetPongHandler(func(data string) error { a.pongs <- data; return nil })
	t.Cleanup(func() { ws.Close() })
	go a.run()
	waitFor(t, func() bool { _, ok := s.Hub.Status("dev1"); return ok })
	return a
}

func (a *fakeAgent) send(b []byte) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (a *fakeAgent) frame(op Op, ch, arg uint16) {
	a.send(AppendHeader(nil, op, ch, arg))
}

func (a *fakeAgent) run() {
	for {
		_, msg, err := a.ws.ReadMessage()
		if err != nil {
			a.mu.Lock()
			for _, stop := range a.sources {
				close(stop)
			}
			a.sources = map[uint16]chan struct{}{}
			a.mu.Unlock()
			return
		}
		f, err := ParseFrame(msg)
		if err != nil {
			a.t.Errorf("reflector sent a bad frame % x: %v", msg, err)
			continue
		}
		switch f.Op {
		case OpOpen:
			switch {
			case f.Port == fakeEcho:
				a.frame(OpConfirm, f.Channel, 0)
			case f.Port == fakeSource:
				a.frame(OpConfirm, f.Channel, 0)
				stop := make(chan struct{})
				a.mu.Lock()
				a.sources[f.Channel] = stop
				a.mu.Unlock()
				go a.source(f.Channel, stop)
			case f.Port == fakeSilent:
			case f.Port > fakeFault && f.Port <= fakeCodeMax:
				a.frame(OpFault, f.Channel, f.Port-fakeFault)
			default:
				a.frame(OpFault, f.Channel, uint16(CodeNotForwarded))
			}
		case OpData:
			a.mu.Lock()
			a.maxPayload = max(a.maxPayload, len(f.Payload))
			a.mu.Unlock()
			a.send(msg) // echo: the same frame back
		case OpClose:
			a.frame(OpClose, f.Channel, 0)
		case OpError:
			a.mu.Lock()
			a.errors[f.Channel] = f.Code
			if stop, ok := a.sources[f.Channel]; ok {
				close(stop)
				delete(a.sources, f.Channel)
			}
			a.mu.Unlock()
		}
	}
}

// source sends data on ch until stopped, as a device that streams.
func (a *fakeAgent) source(ch uint16, stop chan struct{}) {
	payload := bytes.Repeat([]byte("s"), MaxPayload)
	frame := AppendData(nil, ch, payload)
	for {
		select {
		case <-stop:
			return
		default:
		}
		a.send(frame)
	}
}

func (a *fakeAgent) dial(port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.hub.Dial(ctx, "dev1", port, netip.Addr{})
}

func (a *fakeAgent) tunnel() *agentTunnel {
	t, _ := a.hub.Tunnel("dev1")
	return t.(*agentTunnel)
}

func TestWebTunnelAgentRegistersWithItsProperties(t *testing.T) {
	a := startFakeAgent(t)
	st, _ := a.hub.Status("dev1")
	if st.Kind != Kind {
		t.Errorf("kind %q", st.Kind)
	}
	if fmt.Sprint(st.Ports) != fmt.Sprint([]uint16{fakeEcho, fakeSource, fakeSilent, fakeFault + 2}) {
		t.Errorf("ports %v", st.Ports)
	}
	want := map[string]string{"targetHost": "127.0.0.1", "httpPort": "80", "deviceName": `Pump "17"`}
	if fmt.Sprint(st.Properties) != fmt.Sprint(want) {
		t.Errorf("properties %v, want %v", st.Properties, want)
	}
}

func TestWebTunnelOpenConfirmAndFaults(t *testing.T) {
	a := startFakeAgent(t)
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatalf("open echo: %v", err)
	}
	c.Close()
	tun := a.tunnel()
	for _, tc := range []struct {
		code Code
		want error
	}{
		{CodeNotForwarded, tunnel.ErrPortNotAllowed},
		{CodeRefused, tunnel.ErrRefused},
		{CodeTimeout, tunnel.ErrTimeout},
		{CodeProtocol, tunnel.ErrDeviceFailure},
		{CodeBadChannel, tunnel.ErrDeviceFailure},
	} {
		_, err := tun.Open(context.Background(), fakeFault+uint16(tc.code), "")
		if !errors.Is(err, tc.want) {
			t.Errorf("fault %s: got %v, want %v", tc.code, err, tc.want)
		}
	}
	if _, err := a.dial(fakeFault + 2); !errors.Is(err, tunnel.ErrPortNotAllowed) {
		t.Errorf("hub dial of a faulting port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := tun.Open(ctx, fakeSilent, ""); !errors.Is(err, tunnel.ErrTimeout) {
		t.Errorf("unanswered open: %v, want tunnel.ErrTimeout", err)
	}
	waitFor(t, func() bool { tun.mu.Lock(); defer tun.mu.Unlock(); return len(tun.chans) == 1 })
}

// echo sends n random bytes through c and checks what comes back by SHA-256.
func echo(t *testing.T, c net.Conn, n int) {
	t.Helper()
	sent := sha256.New()
	done := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(uint64(n), 1))
		buf := make([]byte, 50_000)
		left := n
		for left > 0 {
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
		t.Errorf("read echo: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("write: %v", err)
	}
	if m != int64(n) || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Errorf("echoed %d bytes, want %d; checksums match: %v", m, n, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
	}
}

func TestWebTunnelDataBothWaysWithHalfClose(t *testing.T) {
	a := startFakeAgent(t)
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, 4<<20+17) // ends with CloseWrite, then reads to EOF
	c.Close()
	if a.maxPayload > MaxPayload {
		t.Errorf("reflector sent a DATA payload of %d bytes", a.maxPayload)
	}
	tun := a.tunnel()
	waitFor(t, func() bool { tun.mu.Lock(); defer tun.mu.Unlock(); return len(tun.chans) == 0 })
}

func TestWebTunnelManyChannels(t *testing.T) {
	a := startFakeAgent(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			c, err := a.dial(fakeEcho)
			if err != nil {
				t.Errorf("channel %d: %v", i, err)
				return
			}
			defer c.Close()
			echo(t, c, 100_000+i)
		})
	}
	wg.Wait()
}

func TestWebTunnelUserWhoStopsReadingLosesOnlyTheirChannel(t *testing.T) {
	a := startFakeAgent(t)
	stuck, err := a.dial(fakeSource)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads stuck: its queue fills, the tunnel is held up for the
	// stall timeout, then the channel is closed with ERROR.
	waitFor(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.errors[1]
		return ok
	})
	a.mu.Lock()
	code := a.errors[1]
	a.mu.Unlock()
	if code != CodeSocket {
		t.Errorf("agent got ERROR %s", code)
	}
	// What was queued is dropped; the user gets the reason.
	stuck.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.Copy(io.Discard, stuck); !errors.Is(err, errStalled) {
		t.Errorf("stalled channel read: %v, want errStalled", err)
	}
	if _, err := stuck.Write([]byte("x")); err == nil {
		t.Error("write to a stalled channel succeeded")
	}
	stuck.Close()
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, 300_000)
}

func TestWebTunnelSlowReaderIsNotClosed(t *testing.T) {
	a := startFakeAgent(t)
	c, err := a.dial(fakeSource)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 32<<10)
	total := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("slow reader after %d bytes: %v", total, err)
		}
		total += n
		time.Sleep(50 * time.Millisecond) // reads, just slowly: < stall timeout
	}
	tun := a.tunnel()
	ch := tun.lookup(1)
	ch.mu.Lock()
	queued := len(ch.buf) - ch.off
	ch.mu.Unlock()
	if queued > tun.cfg.ChannelQueue+MaxMessage {
		t.Errorf("queued %d bytes", queued)
	}
}

func TestWebTunnelPingIsAnsweredWithPong(t *testing.T) {
	a := startFakeAgent(t)
	if err := a.ws.WriteControl(websocket.PingMessage, []byte("keep"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-a.pongs:
		if got != "keep" {
			t.Errorf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// TestWebTunnelPropertyUpdateFrame: a property update frame changes what
// the hub shows and which ports Dial allows, merged with the upgrade's
// properties; unknown keys and a bad targetPorts are dropped.
func TestWebTunnelPropertyUpdateFrame(t *testing.T) {
	a := startFakeAgent(t)
	if _, err := a.dial(22); !errors.Is(err, tunnel.ErrPortNotAllowed) {
		t.Fatalf("port 22 before the update: %v", err)
	}
	f, _ := AppendFrame(nil, Frame{Op: OpProps, Props: []Property{
		{"name", "Pump 18"}, {"targetPorts", fmt.Sprintf("%d,22", fakeEcho)}, {"unknown", "x"}, {"sshPort", "22"}}})
	a.send(f)
	var st tunnel.DeviceStatus
	waitFor(t, func() bool { st, _ = a.hub.Status("dev1"); return st.Properties["deviceName"] == "Pump 18" })
	if fmt.Sprint(st.Ports) != fmt.Sprint([]uint16{fakeEcho, 22}) {
		t.Errorf("ports %v", st.Ports)
	}
	want := map[string]string{"targetHost": "127.0.0.1", "httpPort": "80", "deviceName": "Pump 18", "sshPort": "22"}
	if !maps.Equal(st.Properties, want) {
		t.Errorf("properties %v, want %v", st.Properties, want)
	}
	if _, err := a.dial(fakeSource); !errors.Is(err, tunnel.ErrPortNotAllowed) {
		t.Errorf("port %d no longer declared: %v", fakeSource, err)
	}
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatalf("port %d declared by the update: %v", fakeEcho, err)
	}
	c.Close()

	bad, _ := AppendFrame(nil, Frame{Op: OpProps, Props: []Property{{"targetPorts", "x"}, {"version", "2"}}})
	a.send(bad)
	waitFor(t, func() bool { st, _ = a.hub.Status("dev1"); return st.Properties["deviceVersion"] == "2" })
	if fmt.Sprint(st.Ports) != fmt.Sprint([]uint16{fakeEcho, 22}) {
		t.Errorf("a bad targetPorts changed the ports: %v", st.Ports)
	}
}

func TestWebTunnelBadFramesDoNotBreakIt(t *testing.T) {
	a := startFakeAgent(t)
	for _, m := range [][]byte{
		{}, {0x99, 0, 0, 1}, {0x01, 0, 0, 1}, {0x01, 0, 0, 1, 0, 22}, {0x81, 0, 0, 9},
		{0x00, 0, 0x12, 0x34, 1, 2, 3}, {0x02, 0, 0x12, 0x34}, {0x11, 0, 0x22, 0x22},
		{0x80, 0, 0x12, 0x34, 0, 1}, {0x40, 0, 0, 0, 9, 1}, {0x40, 0, 0, 0},
	} {
		a.send(m)
	}
	a.wmu.Lock()
	a.ws.WriteMessage(websocket.TextMessage, []byte("hello"))
	a.wmu.Unlock()
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, 10_000)
}

func TestWebTunnelEndsItsChannels(t *testing.T) {
	a := startFakeAgent(t)
	c, err := a.dial(fakeEcho)
	if err != nil {
		t.Fatal(err)
	}
	tun := a.tunnel()
	a.ws.Close()
	select {
	case <-tun.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("tunnel not done")
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, tunnel.ErrDeviceOffline) {
		t.Errorf("read after tunnel end: %v", err)
	}
	waitFor(t, func() bool { _, ok := a.hub.Status("dev1"); return !ok })
	if _, err := tun.Open(context.Background(), fakeEcho, ""); !errors.Is(err, tunnel.ErrDeviceOffline) {
		t.Errorf("open on an ended tunnel: %v", err)
	}
}

// discardConn is a connection that takes every write and never reads.
type discardConn struct {
	net.Conn // nil: other methods are not called
	closed   chan struct{}
	once     sync.Once
}

func (c *discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *discardConn) Read([]byte) (int, error)    { <-c.closed; return 0, net.ErrClosed }
func (c *discardConn) Close() error                { c.once.Do(func() { close(c.closed) }); return nil }
func (c *discardConn) SetDeadline(time.Time) error { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error {
	return nil
}
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (c *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// hijacker upgrades onto a discardConn.
type hijacker struct {
	httptest.ResponseRecorder
	conn net.Conn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// discardTunnel is a tunnel whose agent takes every frame and sends none.
func discardTunnel(t testing.TB, cfg tunnelConfig) *agentTunnel {
	t.Helper()
	conn := &discardConn{closed: make(chan struct{})}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	ws, err := upgrader.Upgrade(&hijacker{conn: conn}, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	tun := newAgentTunnel(ws, tunnel.DeviceInfo{Ports: []uint16{7}}, cfg)
	t.Cleanup(func() { tun.Close() })
	return tun
}

func TestWebTunnelWriteDoesNotAllocate(t *testing.T) {
	tun := discardTunnel(t, tunnelConfig{})
	c, err := tun.allocate(7)
	if err != nil {
		t.Fatal(err)
	}
	c.state = stateOpen
	p := make([]byte, 3*MaxPayload+100)
	if n := testing.AllocsPerRun(100, func() { c.Write(p) }); n > 0 {
		t.Errorf("Write of 4 frames: %v allocations", n)
	}
}

// rawUpgrade sends an upgrade as WebTunnelAgent does (POST) and returns the
// response.
func rawUpgrade(t *testing.T, ts *httptest.Server, h http.Header) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/", nil)
	req.Header = h
	req.Header.Set("Sec-WebSocket-Protocol", ServerSubprotocol)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestWebTunnelUpgradeByPost(t *testing.T) {
	s, ts := testServer(t)
	resp := rawUpgrade(t, ts, agentHeader("dev1@any-domain", "s3cret"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != ServerSubprotocol {
		t.Errorf("subprotocol %q", got)
	}
	waitFor(t, func() bool { _, ok := s.Hub.Status("dev1"); return ok })
}

func TestWebTunnelCredentialsAreCheckedBeforeUpgrade(t *testing.T) {
	s, ts := testServer(t)
	s.Domain = "00000000-0000-0000-0000-000000000000"
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"wrong password", agentHeader("dev1@00000000-0000-0000-0000-000000000000", "nope")},
		{"wrong domain", agentHeader("dev1@other", "s3cret")},
		{"bad device id", agentHeader("dev_1@00000000-0000-0000-0000-000000000000", "s3cret")},
		{"no credentials", func() http.Header { h := agentHeader("x", "y"); h.Del("Authorization"); return h }()},
	} {
		resp := rawUpgrade(t, ts, tc.h)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: status %d, WWW-Authenticate %q", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	h := agentHeader("dev1@00000000-0000-0000-0000-000000000000", "s3cret")
	h.Del(HeaderProperty)
	if resp := rawUpgrade(t, ts, h); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no targetPorts: status %d", resp.StatusCode)
	}
}

func TestWebTunnelLockoutIs429AndStoreFailure503(t *testing.T) {
	s, ts := testServer(t)
	h := agentHeader("dev1@d", "s3cret")
	s.Authenticate = func(context.Context, netip.Addr, string, string) error {
		return fmt.Errorf("check: %w", lockedOut(40*time.Second))
	}
	if resp := rawUpgrade(t, ts, h); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "40" {
		t.Errorf("locked out: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	s.Authenticate = func(context.Context, netip.Addr, string, string) error { return errors.New("store down") }
	if resp := rawUpgrade(t, ts, h); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("store failure: status %d", resp.StatusCode)
	}
}

// FuzzWebTunnelDispatch plays a script of agent messages and user actions
// against a tunnel with channels in every state (1 pending, 2 open, 3 open
// and half-closed by the user, 4 abandoned by Open). A script byte below
// 0xf0 is the length of the agent message that follows; 0xf0-0xf3 is a user
// action (read what is queued, CloseWrite, Close, Write) on the channel the
// next byte names, if the user holds it (2, 3, and 1 once confirmed).
// Whatever the script, nothing panics or blocks (a second answer to a
// pending Open would), and after every step:
//   - the tunnel holds no channel the agent or the user has ended (closed,
//     failed, or CLOSE sent both ways), and never more channels than it
//     started with: the agent cannot open any;
//   - a channel queues at most ChannelQueue plus one frame, and nothing once
//     the user has closed it;
//   - the device properties stay within the known names and lengths.
//
// Once the user has closed its channels, only Open's may still be held.
func FuzzWebTunnelDispatch(f *testing.F) {
	for _, m := range [][]byte{
		{0x11, 0, 0, 1}, {0x81, 0, 0, 2, 0, 2}, {0x00, 0, 0, 1, 'x'}, {0x02, 0, 0, 1},
		{0x80, 0, 0, 3, 0, 5}, {0x40, 0, 0, 0, 1, 4, 'n', 'a', 'm', 'e', 1, 'x'}, {0x01, 0, 0, 9, 0, 80},
	} {
		f.Add(dispatchScript(m, m))
	}
	f.Add(dispatchScript([]byte{0x00, 0, 0, 2, 'a', 'b'}, []byte{0x02, 0, 0, 2}, []byte{0xf1, 2}, []byte{0xf0, 2}, []byte{0xf2, 2}, []byte{0x00, 0, 0, 2, 'c'}))
	f.Add(dispatchScript([]byte{0xf2, 3}, []byte{0x02, 0, 0, 3}, []byte{0x11, 0, 0, 4}, []byte{0x11, 0, 0, 4}))
	const queue = 16
	f.Fuzz(func(t *testing.T, script []byte) {
		tun := discardTunnel(t, tunnelConfig{ChannelQueue: queue, StallTimeout: time.Millisecond})
		chans := make([]*channel, 5) // by number; 0 is never used
		for i, st := range []channelState{statePending, stateOpen, stateOpen, stateAbandoned} {
			c, err := tun.allocate(7)
			if err != nil || c.id != uint16(i+1) {
				t.Fatalf("allocate: %v, %v", c, err)
			}
			c.state = st
			chans[c.id] = c
		}
		chans[3].CloseWrite()
		answers := 0
		held := map[uint16]bool{2: true, 3: true} // the channels the user has
		var bad error
		done := make(chan struct{})
		go func() {
			defer close(done)
			for len(script) > 0 {
				op := script[0]
				script = script[1:]
				if op < 0xf0 {
					n := min(int(op), len(script))
					if fr, err := ParseFrame(script[:n]); err == nil {
						tun.dispatch(fr)
					}
					script = script[n:]
				} else if len(script) > 0 {
					c := chans[1+int(script[0])%3]
					script = script[1:]
					if !held[c.id] {
						continue // Open still owns it: the user has nothing to act on
					}
					switch op {
					case 0xf0:
						c.SetReadDeadline(time.Now().Add(-time.Second)) // what is queued, without waiting
						c.Read(make([]byte, 64))
					case 0xf1:
						c.CloseWrite()
					case 0xf2:
						c.Close()
					case 0xf3:
						c.Write([]byte("user"))
					}
				}
				select {
				case err := <-chans[1].opened:
					answers++
					held[1] = err == nil
				default:
				}
				if err := checkDispatchState(tun, chans, queue); err != nil {
					bad = err
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the script blocked")
		}
		if bad != nil {
			t.Fatal(bad)
		}
		if answers > 1 {
			t.Fatalf("the pending Open got %d answers", answers)
		}
		for id := range held {
			chans[id].Close()
		}
		if err := checkDispatchState(tun, chans, queue); err != nil {
			t.Fatal(err)
		}
		if n := len(tun.chans); n > 2 { // only Open's (pending, abandoned) may wait for their answer
			t.Fatalf("%d channels held after the user closed all", n)
		}
	})
}

// dispatchScript is a FuzzWebTunnelDispatch script of agent messages; a
// "message" beginning with 0xf0-0xf3 is a user action and its channel.
func dispatchScript(steps ...[]byte) []byte {
	var b []byte
	for _, m := range steps {
		if m[0] >= 0xf0 {
			b = append(b, m...)
			continue
		}
		b = append(b, byte(len(m)))
		b = append(b, m...)
	}
	return b
}

// checkDispatchState checks the invariants FuzzWebTunnelDispatch names.
func checkDispatchState(tun *agentTunnel, chans []*channel, queue int) error {
	tun.mu.Lock()
	held := maps.Clone(tun.chans)
	tun.mu.Unlock()
	if len(held) > 4 {
		return fmt.Errorf("the tunnel holds %d channels; it started with 4", len(held))
	}
	for id, c := range chans[1:] {
		c.mu.Lock()
		state, closed, err, both, queued := c.state, c.closed, c.err, c.gotClose && c.sentClose, len(c.buf)-c.off
		c.mu.Unlock()
		ended := closed || err != nil || both || state == stateEnded
		if held[c.id] == c && ended {
			return fmt.Errorf("channel %d ended (state %d, closed %v, err %v, closed both ways %v) but still held", id+1, state, closed, err, both)
		}
		if queued > queue+MaxPayload || (closed && queued != 0) {
			return fmt.Errorf("channel %d queues %d bytes (closed %v)", id+1, queued, closed)
		}
	}
	if len(tun.props) > len(wireName) {
		return fmt.Errorf("%d device properties: %v", len(tun.props), tun.props)
	}
	for k, v := range tun.props {
		if _, known := wireName[k]; !known || len(v) > tunnel.MaxPropertyLen {
			return fmt.Errorf("device property %q = %q", k, v)
		}
	}
	return nil
}

// FuzzParsePropertyHeader: what parsePropertyHeader accepts is a device
// property with a key, and formatted again (quoted as WebTunnelAgent
// quotes) it parses to the same key and value; what it refuses it returns
// nothing of. Any value that ParsePorts reads is read without panicking.
func FuzzParsePropertyHeader(f *testing.F) {
	f.Add(`device;name="Pump \"17\""`)
	f.Add("device;targetPorts=80, 29000")
	f.Add(`device;x="\`)
	f.Add(`DEVICE ; version = "1.0\\" trailing`)
	f.Add(`device;a=b=c`)
	f.Add(`device;"k"=v`)
	f.Fuzz(func(t *testing.T, h string) {
		k, v, ok := parsePropertyHeader(h)
		if !ok {
			if k != "" || v != "" {
				t.Errorf("%q: not ok but %q=%q", h, k, v)
			}
			return
		}
		if k == "" || k != strings.TrimSpace(k) || strings.Contains(k, "=") {
			t.Fatalf("%q: key %q", h, k)
		}
		if !strings.HasPrefix(strings.TrimSpace(strings.SplitN(h, "=", 2)[1]), `"`) && v != strings.TrimSpace(v) {
			t.Fatalf("%q: unquoted value %q keeps its blanks", h, v)
		}
		for _, again := range []string{"device;" + k + "=" + quote(v), "Device ; " + k + " = " + quote(v) + " "} {
			k2, v2, ok2 := parsePropertyHeader(again)
			if !ok2 || k2 != k || v2 != v {
				t.Fatalf("%q = %q, %q; formatted again as %q it is %q, %q, %v", h, k, v, again, k2, v2, ok2)
			}
		}
		tunnel.ParsePorts(v)
	})
}

func TestParsePropertyHeader(t *testing.T) {
	for _, tc := range []struct{ in, key, value string }{
		{"device;targetPorts=80, 29000", "targetPorts", "80, 29000"},
		{`device;name="Pump 17"`, "name", "Pump 17"},
		{`device;name="say \"hi\" \\ok"`, "name", `say "hi" \ok`},
		{"device; httpPort = 80", "httpPort", "80"},
		{"other;name=x", "", ""},
		{"device;novalue", "", ""},
		{`device;name="open`, "", ""},
	} {
		k, v, ok := parsePropertyHeader(tc.in)
		if ok != (tc.key != "") || k != tc.key || v != tc.value {
			t.Errorf("%q: got %q=%q %v", tc.in, k, v, ok)
		}
	}
}

// lockedOut is a tunnel.Throttled error, as the server's login limiter returns.
type lockedOut time.Duration

func (d lockedOut) Error() string             { return "too many failed attempts" }
func (d lockedOut) RetryAfter() time.Duration { return time.Duration(d) }

// waitFor polls cond until it holds, for 5 s at most.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
