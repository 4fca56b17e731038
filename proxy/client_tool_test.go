package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/store"
)

// newWTClientFixture is the subdomain fixture with credentials: alice:alice-pw
// (Basic), Bearer tok-alice, and user "locked" locked out.
func newWTClientFixture(t *testing.T) *subdomainFixture {
	t.Helper()
	var f *subdomainFixture
	f = newSubdomainFixture(t, func(c *Config) {
		c.Authenticate = func(_ context.Context, _ netip.Addr, user, secret string) (store.Credential, error) {
			switch {
			case user == "alice" && secret == "alice-pw", user == "" && secret == "tok-alice":
				return store.Credential{User: testUsers["alice"]}, nil
			case user == "locked":
				return store.Credential{}, &auth.LockedOutError{Wait: 42 * time.Second}
			}
			return store.Credential{}, store.ErrBadCredentials
		}
	})
	return f
}

// tcpEcho is a TCP echo server that half-closes after its client did.
func tcpEcho(t *testing.T) uint16 {
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
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// postConn turns the first "GET " gorilla's Dialer writes into "POST ", as
// the tools send.
type postConn struct {
	net.Conn
	done bool
}

func (c *postConn) Write(b []byte) (int, error) {
	if !c.done {
		c.done = true
		if rest, ok := bytes.CutPrefix(b, []byte("GET ")); ok {
			if _, err := c.Conn.Write(append([]byte("POST "), rest...)); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

func (f *subdomainFixture) wtDial(host string, hdr http.Header, post bool) (*websocket.Conn, *http.Response, error) {
	addr := f.front.Listener.Addr().String()
	d := websocket.Dialer{
		NetDialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			raw, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			if post {
				return &postConn{Conn: c}, nil
			}
			return c, nil
		},
		Subprotocols:     []string{ClientToolSubprotocol},
		HandshakeTimeout: 5 * time.Second,
	}
	return d.Dial("wss://"+host+"/", hdr)
}

func wtHeader(auth string, port any) http.Header {
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	if port != nil {
		h.Set(HeaderRemotePort, strconv.Itoa(port.(int)))
	}
	return h
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestWebTunnelClientEchoesGETAndPOSTBasicAndBearer(t *testing.T) {
	f := newWTClientFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	for _, tc := range []struct {
		name string
		auth string
		post bool
	}{
		{"get-basic", basic("alice", "alice-pw"), false},
		{"post-basic", basic("alice", "alice-pw"), true},
		{"post-bearer", "Bearer tok-alice", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.auditEvents())
			c, resp, err := f.wtDial("pump-17.localhost:8443", wtHeader(tc.auth, echo), tc.post)
			if err != nil {
				t.Fatalf("dial: %v (%v)", err, resp)
			}
			defer c.Close()
			if c.Subprotocol() != ClientToolSubprotocol {
				t.Errorf("subprotocol %q", c.Subprotocol())
			}
			want := make([]byte, 1<<20)
			rand.Read(want)
			go func() {
				for b := want; len(b) > 0; {
					n := min(len(b), 5000) // more than one message's worth, toward the device
					if c.WriteMessage(websocket.BinaryMessage, b[:n]) != nil {
						return
					}
					b = b[n:]
				}
				// Half-close: the echo must still all come back.
				c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			}()
			var got bytes.Buffer
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
						t.Fatalf("read after %d bytes: %v", got.Len(), err)
					}
					break
				}
				if mt != websocket.BinaryMessage || len(msg) == 0 || len(msg) > 2048 {
					t.Fatalf("message type %d of %d bytes; want binary, 1-2048", mt, len(msg))
				}
				got.Write(msg)
			}
			if sha256.Sum256(got.Bytes()) != sha256.Sum256(want) {
				t.Fatalf("echo differs: %d bytes back of %d", got.Len(), len(want))
			}
			waitUntil(t, func() bool { return len(f.auditEvents()) == before+1 })
			ev := f.auditEvents()[before]
			if ev.Kind != store.AuditStream || ev.User != "alice" || ev.Device != "pump-17" || ev.Port != uint16(echo) ||
				!ev.OK || ev.BytesUp != int64(len(want)) || ev.BytesDown != int64(len(want)) || ev.Client != testClient.String() {
				t.Errorf("audit event %+v", ev)
			}
		})
	}
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after all closed", n)
	}
}

// TestWebTunnelClientMessagesAtMost2048: a device that sends a large write
// reaches the client in messages of at most 2,048 bytes, each one frame.
func TestWebTunnelClientMessagesAtMost2048(t *testing.T) {
	f := newWTClientFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	payload := make([]byte, 100_000)
	rand.Read(payload)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(payload)
		c.Close()
	}()
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	port := ln.Addr().(*net.TCPAddr).Port
	c, resp, err := f.wtDial("pump-17.localhost", wtHeader("Bearer tok-alice", port), true)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	// Read raw frames: FIN set, binary, unmasked, payload ≤ 2,048.
	raw := c.NetConn()
	var got []byte
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(raw, hdr[:2]); err != nil {
			t.Fatalf("frame header: %v after %d bytes", err, len(got))
		}
		fin, op, n := hdr[0]&0x80 != 0, hdr[0]&0x0f, int(hdr[1]&0x7f)
		if n == 126 {
			io.ReadFull(raw, hdr[2:4])
			n = int(hdr[2])<<8 | int(hdr[3])
		} else if n == 127 {
			t.Fatal("64-bit length")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(raw, body); err != nil {
			t.Fatal(err)
		}
		if op == websocket.CloseMessage {
			break
		}
		if !fin || op != websocket.BinaryMessage || n == 0 || n > 2048 {
			t.Fatalf("frame fin=%v op=%d len=%d; want one binary frame of 1-2048 bytes", fin, op, n)
		}
		got = append(got, body...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, differ", len(got))
	}
}

func TestWebTunnelClientRefusals(t *testing.T) {
	f := newWTClientFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"lab"}})
	f.setDevice(store.Device{ID: "pump-19", Groups: []string{"ops"}, Ports: []uint16{22}})
	good := basic("alice", "alice-pw")
	for _, tc := range []struct {
		name, host string
		hdr        http.Header
		status     int
	}{
		{"no credentials", "pump-17.localhost", wtHeader("", echo), http.StatusUnauthorized},
		{"wrong password", "pump-17.localhost", wtHeader(basic("alice", "nope"), echo), http.StatusUnauthorized},
		{"wrong token", "pump-17.localhost", wtHeader("Bearer nope", echo), http.StatusUnauthorized},
		{"proxy scheme", "pump-17.localhost", wtHeader("Digest x", echo), http.StatusUnauthorized},
		{"locked out", "pump-17.localhost", wtHeader(basic("locked", "x"), echo), http.StatusTooManyRequests},
		{"no port", "pump-17.localhost", wtHeader(good, nil), http.StatusBadRequest},
		{"port 0", "pump-17.localhost", wtHeader(good, 0), http.StatusBadRequest},
		{"port 65536", "pump-17.localhost", wtHeader(good, 65536), http.StatusBadRequest},
		{"unknown device", "nope-1.localhost", wtHeader(good, echo), http.StatusNotFound},
		{"no access", "pump-18.localhost", wtHeader(good, echo), http.StatusForbidden},
		{"port not listed", "pump-19.localhost", wtHeader(good, echo), http.StatusForbidden},
	} {
		_, resp, err := f.wtDial(tc.host, tc.hdr, true)
		if err == nil || resp == nil || resp.StatusCode != tc.status {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("%s: status %d (%v); want %d", tc.name, status, err, tc.status)
			continue
		}
		switch tc.status {
		case http.StatusUnauthorized:
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
			}
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") != "42" {
				t.Errorf("%s: Retry-After %q", tc.name, resp.Header.Get("Retry-After"))
			}
		}
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused requests", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused requests audited: %+v", evs)
	}
}

// TestWebTunnelClientDialFailureIsAStatus: the stream opens before the
// upgrade, so a refused port is an HTTP 502, not a WebSocket that closes.
func TestWebTunnelClientDialFailureIsAStatus(t *testing.T) {
	f := newWTClientFixture(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	_, resp, err := f.wtDial("pump-17.localhost", wtHeader("Bearer tok-alice", port), false)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dial to a closed port: %v %v; want 502", err, resp)
	}
}

func TestRevalidateEndsAWebTunnelClient(t *testing.T) {
	f := newWTClientFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c, resp, err := f.wtDial("pump-17.localhost", wtHeader("Bearer tok-alice", echo), false)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	c.WriteMessage(websocket.BinaryMessage, []byte("hi"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hi" {
		t.Fatalf("echo %q %v", msg, err)
	}
	if n := f.p.Open(); n != 1 {
		t.Fatalf("Open() = %d, want 1", n)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("read after revocation succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("still open 5 s after revocation")
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; !strings.Contains(ev.Reason, "access revoked") {
		t.Errorf("audit reason %q", ev.Reason)
	}
}

func TestIsWebTunnelClient(t *testing.T) {
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	if IsClientToolUpgrade(r) {
		t.Error("plain request")
	}
	r.Header.Set("Sec-WebSocket-Protocol", "com.appinf.webtunnel.server/1.0")
	if IsClientToolUpgrade(r) {
		t.Error("agent's subprotocol")
	}
	r.Header.Set("Sec-WebSocket-Protocol", "x, "+ClientToolSubprotocol)
	if !IsClientToolUpgrade(r) {
		t.Error("client's subprotocol")
	}
}

// TestWebTunnelClientMessageDoesNotAllocate: a message toward the client
// costs no allocation (the splice's buffer is pooled, gorilla's server
// writes are in place).
func TestWebTunnelClientMessageDoesNotAllocate(t *testing.T) {
	got := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := clientToolUpgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		got <- ws
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{"Sec-WebSocket-Protocol": {ClientToolSubprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c.NetConn())
	ws := <-got
	defer ws.Close()
	msg := make([]byte, clientToolMessage)
	if n := testing.AllocsPerRun(200, func() {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
	}); n > 0 {
		t.Errorf("%.1f allocations per message", n)
	}
}

// TestWebTunnelClientRefusesOriginOfOtherScheme (attack): a page served
// over plain http:// with the device's name (on a network that can answer
// for it) passed the origin check of the device's https:// host, whose
// scheme it ignored: an origin is scheme, host and port (RFC 6454).
func TestWebTunnelClientRefusesOriginOfOtherScheme(t *testing.T) {
	f := newWTClientFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"http://pump-17.localhost", http.StatusForbidden},
		{"HTTP://pump-17.localhost", http.StatusForbidden},
		{"ws://pump-17.localhost", http.StatusForbidden},
		{"https://pump-17.localhost", http.StatusSwitchingProtocols},
		{"HTTPS://PUMP-17.localhost", http.StatusSwitchingProtocols},
	} {
		hdr := wtHeader(basic("alice", "alice-pw"), echo)
		hdr.Set("Origin", tc.origin)
		c, resp, err := f.wtDial("pump-17.localhost", hdr, false)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if c != nil {
			c.Close()
		}
		if status != tc.status {
			t.Errorf("Origin %s: status %d (%v), want %d", tc.origin, status, err, tc.status)
		}
	}
}
