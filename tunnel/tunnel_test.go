package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/xtaci/smux"
)

// testReflector is a real TLS server with the tunnel endpoint on it.
type testReflector struct {
	hub *Hub
	srv *httptest.Server
	// ended counts the tunnels whose goroutine is done: once a tunnel has
	// ended and its cleanup has left the hub.
	ended atomic.Int64
}

func newTestReflector(t *testing.T) *testReflector {
	t.Helper()
	hub := NewHub(nil, Subprotocol, "webtunnel")
	ts := &Server{Hub: hub, Authenticate: func(_ context.Context, _ netip.Addr, device, secret string) error {
		if device == "broken" {
			return errors.New("store unavailable")
		}
		if secret != "secret-"+device {
			return ErrUnauthorized
		}
		return nil
	}}
	r := &testReflector{hub: hub}
	mux := http.NewServeMux()
	ts.served = func() { r.ended.Add(1) }
	mux.Handle(Path, ts)
	r.srv = httptest.NewTLSServer(mux)
	t.Cleanup(func() { hub.Close(); r.srv.Close() })
	return r
}

// answerFunc decides the agent's reply to an open header and, on ok, serves
// the stream.
type answerFunc func(st *smux.Stream, req OpenRequest)

// echo answers ok and echoes, half-closing when the reflector does.
func echo(st *smux.Stream, req OpenRequest) {
	WriteReply(st, StatusOK, "")
	io.Copy(st, st)
	st.CloseWrite()
}

// connectAgent dials the reflector as a minimal agent: the device side of the
// wire, written against PROTOCOL.md.
func (r *testReflector) connectAgent(t *testing.T, device, secret, ports string, answer answerFunc) *smux.Session {
	t.Helper()
	return r.connectAgentConfig(t, device, secret, ports, MuxConfig(), answer)
}

// connectAgentConfig is connectAgent with the agent's smux configuration.
func (r *testReflector) connectAgentConfig(t *testing.T, device, secret, ports string, cfg *smux.Config, answer answerFunc) *smux.Session {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Subprotocols:    []string{Subprotocol},
		WriteBufferSize: 64<<10 + 64,
	}
	h := http.Header{}
	h.Set("Authorization", BasicCredentials(device, secret))
	h.Set(HeaderPorts, ports)
	h.Set(HeaderPropertyPrefix+"httpPort", "80")
	url := "wss" + strings.TrimPrefix(r.srv.URL, "https") + Path
	ws, resp, err := d.Dial(url, h)
	if err != nil {
		if resp != nil {
			t.Fatalf("dial: %v (status %d)", err, resp.StatusCode)
		}
		t.Fatalf("dial: %v", err)
	}
	sess, err := smux.Client(NewWSConn(ws), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				sess.Close()
				return
			}
			go func() {
				defer st.Close()
				req, err := ReadOpen(st)
				if err != nil {
					return
				}
				answer(st, req)
			}()
		}
	}()
	waitFor(t, func() bool { s, ok := r.hub.Status(device); return ok && s.RemoteAddr == ws.LocalAddr().String() })
	return sess
}

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

func TestStreamsCarryLargeTransfersBothWaysOverWebSocket(t *testing.T) {
	r := newTestReflector(t)
	r.connectAgent(t, "dev1", "secret-dev1", "7", echo)

	const size = 16 << 20
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := r.hub.Dial(context.Background(), "dev1", 7, netip.Addr{})
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(j*7 + i)
			}
			go func() {
				conn.Write(data)
				conn.(closeWriter).CloseWrite()
			}()
			h := sha256.New()
			n, err := io.Copy(h, conn)
			if err != nil || n != size {
				t.Errorf("stream %d: read %d bytes, err %v", i, n, err)
				return
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Errorf("stream %d: checksum mismatch", i)
			}
		}()
	}
	wg.Wait()
	st, _ := r.hub.Status("dev1")
	if st.BytesIn != 4*size || st.BytesOut != 4*size {
		t.Fatalf("counters in %d out %d, want %d each", st.BytesIn, st.BytesOut, 4*size)
	}
	waitFor(t, func() bool { st, _ := r.hub.Status("dev1"); return st.OpenStreams == 0 })
}

func TestNewerTunnelReplacesAndClosesOlder(t *testing.T) {
	r := newTestReflector(t)
	first := r.connectAgent(t, "dev1", "secret-dev1", "7", echo)
	second := r.connectAgent(t, "dev1", "secret-dev1", "7", echo)
	select {
	case <-first.CloseChan():
	case <-time.After(5 * time.Second):
		t.Fatal("older tunnel not closed")
	}
	// The older tunnel's cleanup must not unregister the newer one: wait
	// until that cleanup has run (its request returned), then look.
	waitFor(t, func() bool { return r.ended.Load() >= 1 })
	if second.IsClosed() {
		t.Fatal("newer tunnel closed")
	}
	conn, err := r.hub.Dial(context.Background(), "dev1", 7, netip.Addr{})
	if err != nil {
		t.Fatalf("dial after replacement: %v", err)
	}
	conn.Close()
	if n := len(r.hub.List()); n != 1 {
		t.Fatalf("%d devices listed", n)
	}
}

func TestDialErrorsAreTyped(t *testing.T) {
	r := newTestReflector(t)
	abandoned := make(chan struct{}) // closed when the reflector gives up on port 24
	r.connectAgent(t, "dev1", "secret-dev1", "7,22,23,24", func(st *smux.Stream, req OpenRequest) {
		switch req.Port {
		case 22:
			WriteReply(st, StatusRefused, "connect: connection refused")
		case 23:
			WriteReply(st, StatusTimeout, "")
		case 24:
			// Never answers: holds the stream until the reflector closes it.
			io.Copy(io.Discard, st)
			close(abandoned)
		default:
			echo(st, req)
		}
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		device string
		port   uint16
		want   error
	}{
		{"unknown device", "nope", 7, ErrDeviceOffline},
		{"port outside agent list", "dev1", 8, ErrPortNotAllowed},
		{"refused", "dev1", 22, ErrRefused},
		{"agent timeout", "dev1", 23, ErrTimeout},
		{"no answer", "dev1", 24, ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			conn, err := r.hub.Dial(ctx, tc.device, tc.port, netip.Addr{})
			if !errors.Is(err, tc.want) {
				if conn != nil {
					conn.Close()
				}
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	// The stream that timed out is closed, not left open on the device.
	select {
	case <-abandoned:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of the unanswered open is still open on the device")
	}
}

func TestDeviceGoneIsOffline(t *testing.T) {
	r := newTestReflector(t)
	sess := r.connectAgent(t, "dev1", "secret-dev1", "7", echo)
	sess.Close()
	waitFor(t, func() bool { _, ok := r.hub.Status("dev1"); return !ok })
	if _, err := r.hub.Dial(context.Background(), "dev1", 7, netip.Addr{}); !errors.Is(err, ErrDeviceOffline) {
		t.Fatalf("err %v", err)
	}
}

func TestSlowReaderDoesNotStallOtherStreams(t *testing.T) {
	r := newTestReflector(t)
	// Port 9 floods: the device sends far more than one stream window, and
	// counts what its writes have put on the tunnel.
	var flooded atomic.Int64
	r.connectAgent(t, "dev1", "secret-dev1", "7,9", func(st *smux.Stream, req OpenRequest) {
		if req.Port == 9 {
			WriteReply(st, StatusOK, "")
			chunk := make([]byte, 64<<10)
			for range 8 * StreamWindow / len(chunk) {
				n, err := st.Write(chunk)
				flooded.Add(int64(n))
				if err != nil {
					return
				}
			}
			return
		}
		echo(st, req)
	})
	stalled, err := r.hub.Dial(context.Background(), "dev1", 9, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close() // never read
	// Only once a whole window is on the tunnel, unread, is the other stream
	// tested: the reflector's read of the reply granted StreamWindow, and
	// the device's writes block there.
	waitFor(t, func() bool { return flooded.Load() >= StreamWindow })

	conn, err := r.hub.Dial(context.Background(), "dev1", 7, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("x"), 1<<20)
	go conn.Write(msg)
	if _, err := io.ReadFull(conn, make([]byte, len(msg))); err != nil {
		t.Fatalf("second stream stalled behind an unread one: %v", err)
	}
}

func TestServerRefusesBadAgents(t *testing.T) {
	r := newTestReflector(t)
	client := r.srv.Client()
	url := r.srv.URL + Path
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"not an upgrade", map[string]string{}, http.StatusBadRequest},
		{"no credentials", wsHeaders(nil), http.StatusUnauthorized},
		{"wrong secret", wsHeaders(map[string]string{"Authorization": BasicCredentials("dev1", "x"), HeaderPorts: "80"}), http.StatusUnauthorized},
		{"invalid device id", wsHeaders(map[string]string{"Authorization": BasicCredentials("Dev_1", "secret-Dev_1"), HeaderPorts: "80"}), http.StatusUnauthorized},
		{"credential check failing", wsHeaders(map[string]string{"Authorization": BasicCredentials("broken", "x"), HeaderPorts: "80"}), http.StatusServiceUnavailable},
		{"no ports", wsHeaders(map[string]string{"Authorization": BasicCredentials("dev1", "secret-dev1")}), http.StatusBadRequest},
		{"bad port", wsHeaders(map[string]string{"Authorization": BasicCredentials("dev1", "secret-dev1"), HeaderPorts: "80,70000"}), http.StatusBadRequest},
		{"no subprotocol", wsHeaders(map[string]string{"Authorization": BasicCredentials("dev1", "secret-dev1"), HeaderPorts: "80", "Sec-WebSocket-Protocol": ""}), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func wsHeaders(extra map[string]string) map[string]string {
	h := map[string]string{
		"Connection":             "Upgrade",
		"Upgrade":                "websocket",
		"Sec-WebSocket-Version":  "13",
		"Sec-WebSocket-Key":      "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Protocol": Subprotocol,
	}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

func TestStatusReportsDeclaredFacts(t *testing.T) {
	r := newTestReflector(t)
	r.connectAgent(t, "dev1", "secret-dev1", "80, 22", echo)
	st, ok := r.hub.Status("dev1")
	if !ok {
		t.Fatal("not connected")
	}
	if len(st.Ports) != 2 || st.Ports[0] != 80 || st.Ports[1] != 22 || st.Properties["httpPort"] != "80" || st.Kind != Subprotocol {
		t.Fatalf("status %+v", st)
	}
	if time.Since(st.ConnectedSince) > time.Minute {
		t.Fatalf("connected since %v", st.ConnectedSince)
	}
}

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func TestJoinKeepsHalfClosedClientsReply(t *testing.T) {
	client, proxyFront := tcpPair(t)
	proxyBack, device := tcpPair(t)
	go Join(context.Background(), proxyFront, proxyBack)

	// The device reads the whole request, then answers 1 MiB and closes.
	go func() {
		req, _ := io.ReadAll(device)
		device.Write(bytes.Repeat(req, (1<<20)/len(req)))
		device.Close()
	}()
	client.Write([]byte("ping"))
	client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || len(got) != 1<<20 {
		t.Fatalf("read %d bytes after half-close, err %v", len(got), err)
	}
}

func TestJoinEndsWithContext(t *testing.T) {
	client, front := tcpPair(t)
	back, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Join(ctx, front, back); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not end with its context")
	}
	client.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client still open")
	}
}
