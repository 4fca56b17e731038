package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The proxy fixture is the subdomain fixture (newSubdomainFixture) with
// proxy logins, for CONNECT and absolute-form requests:
//
//   - alice:alice-pw (Basic) and Bearer tok-alice are alice (group ops);
//   - "locked" is locked out for 42 s (429);
//   - "faulty" cannot be checked: the user store fails (500);
//   - anything else is a wrong credential (407).
//
// Its Device hook fails for the device "store-fault" (500). dial, when not
// nil, replaces the fixture's Dial (which reaches 127.0.0.1:<port>) and is
// counted in f.dials all the same.
type dialFunc func(ctx context.Context, device string, port uint16, client netip.Addr) (net.Conn, error)

func newProxyFixture(t *testing.T, dial dialFunc, tweak func(*Config)) *subdomainFixture {
	t.Helper()
	var f *subdomainFixture
	f = newSubdomainFixture(t, func(c *Config) {
		c.Authenticate = func(_ context.Context, _ netip.Addr, user, secret string) (store.Credential, error) {
			switch {
			case user == "alice" && secret == "alice-pw", user == "" && secret == "tok-alice":
				return store.Credential{User: testUsers["alice"]}, nil
			case user == "locked":
				return store.Credential{}, &auth.LockedOutError{Wait: 42 * time.Second}
			case user == "faulty":
				return store.Credential{}, errors.New("users file unreadable")
			}
			return store.Credential{}, fmt.Errorf("user %q: %w", user, store.ErrBadCredentials)
		}
		device := c.Device
		c.Device = func(ctx context.Context, id string) (store.Device, error) {
			if id == "store-fault" {
				return store.Device{}, errors.New("devices file unreadable")
			}
			return device(ctx, id)
		}
		if dial != nil {
			c.Dial = func(ctx context.Context, device string, port uint16, client netip.Addr) (net.Conn, error) {
				f.dials.Add(1)
				return dial(ctx, device, port, client)
			}
		}
		if tweak != nil {
			tweak(c)
		}
	})
	return f
}

// plainFront serves the fixture's proxy on plain HTTP as well (the server
// behind a TLS-terminating reverse proxy) and returns its address.
func plainFront(f *subdomainFixture) string {
	srv := httptest.NewServer(&testFront{p: f.p, next: &f.next})
	f.t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// clientFront is where a test's client connects: the fixture's TLS listener or a
// plain one.
type clientFront struct {
	name string
	addr string
	tls  bool
}

func tlsFront(f *subdomainFixture) clientFront {
	return clientFront{"tls", f.front.Listener.Addr().String(), true}
}

// fronts is the fixture's TLS front and a new plain one.
func fronts(f *subdomainFixture) []clientFront {
	return []clientFront{tlsFront(f), {"plain", plainFront(f), false}}
}

// proxyConn is a client's connection to a front. Its deadline bounds the
// whole test conversation.
type proxyConn interface {
	net.Conn
	CloseWrite() error
}

func dialFront(t *testing.T, fr clientFront) proxyConn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", fr.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var c proxyConn = raw.(*net.TCPConn)
	if fr.tls {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// connectRequest is CONNECT target as a client writes it, with auth as its
// Proxy-Authorization unless auth is "".
func connectRequest(target, auth string) string {
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	return req + "\r\n"
}

// sendConnect writes req and early in one write and reads the proxy's answer:
// its body for a refusal, or the reader that carries the stream after a 200.
func sendConnect(t *testing.T, c net.Conn, br *bufio.Reader, req string, early []byte) (*http.Response, string) {
	t.Helper()
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("read answer to CONNECT: %v", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, "" // the body is the stream: read it from br
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read refusal body: %v", err)
	}
	return resp, string(body)
}

// oneLine reports whether body is a one-line reason, as http.Error writes it.
func oneLine(body string) bool {
	return strings.Count(body, "\n") == 1 && strings.HasSuffix(body, "\n") && strings.TrimSpace(body) != ""
}

// replyDevice is a device port that reads what its client sends until the
// client half-closes, hands it to got, then answers reply(what it read) and
// closes.
func replyDevice(t *testing.T, reply func([]byte) []byte) (port uint16, got <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		in, _ := io.ReadAll(c)
		ch <- in
		c.Write(reply(in))
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), ch
}

// TestConnectRefusals lists every answer a CONNECT can get before anything is
// dialled: its status, its header, a one-line reason, and no dial, no audit
// event. The connection stays open after each, as for any HTTP answer.
func TestConnectRefusals(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"lab"}})
	f.setDevice(store.Device{ID: "pump-19", Groups: []string{"ops"}, Ports: []uint16{22}})
	good := basic("alice", "alice-pw")
	target := "pump-17.localhost:" + strconv.Itoa(int(echo))
	for _, tc := range []struct {
		name, target, auth string
		status             int
		header, value      string // a header the answer must carry
		reason             string // the reason, or "" for any one line
	}{
		{"no credentials", target, "", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"malformed Basic", target, "Basic !!!notbase64", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"Basic without a colon", target, "Basic YWxpY2U=", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"other scheme", target, "Digest username=alice", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"wrong password", target, basic("alice", "nope"), 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"wrong token", target, "Bearer nope", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"throttled login", target, basic("locked", "x"), 429, "Retry-After", "42", "too many failed attempts; retry in 42s"},
		{"credentials not checkable", target, basic("faulty", "x"), 500, "", "", "internal error: the reflector cannot check this request now"},
		{"port 0", "pump-17.localhost:0", good, 400, "", "", `bad target address: port "0"`},
		{"port 65536", "pump-17.localhost:65536", good, 400, "", "", `bad target address: port "65536"`},
		// (A port by name, "pump-17.localhost:ssh", never reaches the
		// proxy: net/http answers 400 and closes.)
		{"IP address", "127.0.0.1:" + strconv.Itoa(int(echo)), good, 403, "", "", "not a device address: 127.0.0.1"},
		{"IPv6 address", "[::1]:22", good, 403, "", "", "not a device address: ::1"},
		{"other domain", "example.com:443", good, 403, "", "", "not a device address: example.com"},
		{"the reflector itself", "localhost:8443", good, 403, "", "", "not a device address: localhost"},
		{"no access", "pump-18.localhost:22", good, 403, "", "", "no access to device pump-18"},
		{"port not in the device record", "pump-19.localhost:23", good, 403, "", "", "port not allowed: device pump-19 port 23"},
		{"unknown device", "nope-1.localhost:22", good, 404, "", "", "unknown device nope-1"},
		{"device lookup fails", "store-fault.localhost:22", good, 500, "", "", "internal error: the reflector cannot check this request now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFront(t, tlsFront(f))
			resp, body := sendConnect(t, c, bufio.NewReader(c), connectRequest(tc.target, tc.auth), nil)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.header != "" && resp.Header.Get(tc.header) != tc.value {
				t.Errorf("%s %q, want %q", tc.header, resp.Header.Get(tc.header), tc.value)
			}
			if !oneLine(body) || strings.TrimSpace(body) != tc.reason {
				t.Errorf("body %q, want the one line %q", body, tc.reason)
			}
			if resp.Close {
				t.Errorf("the refusal closes the connection")
			}
		})
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused CONNECTs", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused CONNECTs audited as streams: %+v", evs)
	}
}

// TestConnectRetriesOnTheSameConnectionAfter407: a client that learns from
// the 407 that it must authenticate sends its credentials on the same
// connection, as curl and browsers do.
func TestConnectRetriesOnTheSameConnectionAfter407(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	target := "pump-17.localhost:" + strconv.Itoa(int(echo))
	c := dialFront(t, tlsFront(f))
	br := bufio.NewReader(c)
	if resp, body := sendConnect(t, c, br, connectRequest(target, ""), nil); resp.StatusCode != 407 {
		t.Fatalf("without credentials: %d %q", resp.StatusCode, body)
	}
	if resp, body := sendConnect(t, c, br, connectRequest(target, "Bearer tok-alice"), nil); resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d %q", resp.StatusCode, body)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

// TestConnectDialFailuresMapToStatus: what the hub or the agent answers to
// the stream open becomes the CONNECT's status, with a one-line reason that
// names the device; nothing is spliced or audited as a stream.
func TestConnectDialFailuresMapToStatus(t *testing.T) {
	type dialCall struct {
		device string
		port   uint16
		client netip.Addr
	}
	calls := make(chan dialCall, 16)
	failures := map[uint16]error{
		1: fmt.Errorf("dial device pump-17: %w", tunnel.ErrDeviceOffline),
		2: fmt.Errorf("dial device pump-17 port 2: %w", tunnel.ErrPortNotAllowed), // the hub's own list
		3: fmt.Errorf("dial device pump-17 port 3: %w", &tunnel.OpenError{Status: tunnel.StatusNotAllowed, Message: "not in targetPorts"}),
		4: fmt.Errorf("dial device pump-17 port 4: %w", &tunnel.OpenError{Status: tunnel.StatusRefused, Message: "dial tcp 127.0.0.1:4: connection refused"}),
		5: fmt.Errorf("dial device pump-17 port 5: %w", &tunnel.OpenError{Status: tunnel.StatusTimeout}),
		6: fmt.Errorf("dial device pump-17 port 6: open stream: %w", tunnel.ErrTimeout),
		7: fmt.Errorf("dial device pump-17 port 7: %w", &tunnel.OpenError{Status: tunnel.StatusOther, Message: "out of memory"}),
		8: fmt.Errorf("dial device pump-17 port 8: %w", tunnel.ErrDeviceFailure),
	}
	f := newProxyFixture(t, func(_ context.Context, device string, port uint16, client netip.Addr) (net.Conn, error) {
		calls <- dialCall{device, port, client}
		return nil, failures[port]
	}, nil)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	for _, tc := range []struct {
		name   string
		port   uint16
		status int
	}{
		{"device offline", 1, http.StatusBadGateway},
		{"port not allowed by the hub", 2, http.StatusForbidden},
		{"port not allowed by the agent", 3, http.StatusForbidden},
		{"refused by the device", 4, http.StatusBadGateway},
		{"agent's dial timed out", 5, http.StatusGatewayTimeout},
		{"agent did not answer", 6, http.StatusGatewayTimeout},
		{"agent failure", 7, http.StatusBadGateway},
		{"device failure", 8, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFront(t, tlsFront(f))
			resp, body := sendConnect(t, c, bufio.NewReader(c), connectRequest("pump-17.localhost:"+strconv.Itoa(int(tc.port)), "Bearer tok-alice"), nil)
			if resp.StatusCode != tc.status || !oneLine(body) || !strings.Contains(body, "pump-17") {
				t.Errorf("%d %q; want %d and one line naming the device", resp.StatusCode, body, tc.status)
			}
			if want := failures[tc.port].Error() + "\n"; body != want {
				t.Errorf("reason %q, want %q", body, want)
			}
			select {
			case call := <-calls:
				if call != (dialCall{"pump-17", tc.port, testClient}) {
					t.Errorf("Dial(%+v), want pump-17 port %d for %v", call, tc.port, testClient)
				}
			default:
				t.Errorf("answered %d without a dial", resp.StatusCode)
			}
		})
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("failed opens audited as streams: %+v", evs)
	}
}

// TestConnectOpenTimeoutIs504: the open, agent's answer included, gets
// Config.OpenTimeout; a device that does not answer in that time is a 504.
func TestConnectOpenTimeoutIs504(t *testing.T) {
	const timeout = 100 * time.Millisecond
	deadlines := make(chan time.Duration, 1)
	f := newProxyFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadlines <- -1
			return nil, errors.New("no deadline")
		}
		deadlines <- time.Until(deadline)
		<-ctx.Done() // the agent never answers; the hub gives up when ctx ends
		return nil, fmt.Errorf("dial device %s port %d: open stream: %w", device, port, tunnel.ErrTimeout)
	}, func(c *Config) { c.OpenTimeout = timeout })
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	start := time.Now()
	resp, body := sendConnect(t, c, bufio.NewReader(c), connectRequest("pump-17.localhost:22", "Bearer tok-alice"), nil)
	if resp.StatusCode != http.StatusGatewayTimeout || body != "dial device pump-17 port 22: open stream: device timeout\n" {
		t.Errorf("%d %q, want 504 and the reason", resp.StatusCode, body)
	}
	if d := <-deadlines; d <= 0 || d > timeout {
		t.Errorf("Dial's context ends in %v, want within OpenTimeout %v", d, timeout)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %v, before OpenTimeout %v", took, timeout)
	}
}

// TestConnectCarriesEarlyBytesAndAHalfClose: bytes a client sends right
// behind its CONNECT, in the same write and before the 200, reach the
// device first; a client that half-closes at once, before the 200, still
// gets the device's whole reply, which the device only starts once it has
// read the client's end. On TLS and on plain HTTP fronts.
func TestConnectCarriesEarlyBytesAndAHalfClose(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	for _, fr := range fronts(f) {
		t.Run(fr.name, func(t *testing.T) {
			early := []byte("SSH-2.0-OpenSSH_9.6\r\nand more early bytes\n")
			reply := func(in []byte) []byte { return bytes.Repeat(in, (1<<20)/len(in)+1) } // over 1 MiB
			port, got := replyDevice(t, reply)
			f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
			before := len(f.auditEvents())

			c := dialFront(t, fr)
			br := bufio.NewReader(c)
			if _, err := c.Write(append([]byte(connectRequest("pump-17.localhost:"+strconv.Itoa(int(port)), "Bearer tok-alice")), early...)); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			down, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading the reply: %v after %d bytes", err, len(down))
			}
			if in := <-got; !bytes.Equal(in, early) {
				t.Errorf("device read %q, want the early bytes %q", in, early)
			}
			if want := reply(early); !bytes.Equal(down, want) {
				t.Errorf("client got %d bytes of the device's %d", len(down), len(want))
			}
			waitUntil(t, func() bool { return len(f.auditEvents()) == before+1 })
			ev := f.auditEvents()[before]
			if ev.BytesDown != int64(len(reply(early))) || ev.Reason != "" || !ev.OK {
				t.Errorf("audit event %+v", ev)
			}
		})
	}
}

// TestConnectSplicesBothWaysAndAuditsTheStream: an accepted CONNECT is
// answered 200 only once the device's port has answered, carries bytes
// both ways, and is audited once as a stream when it closes: who, where,
// from which client, how many bytes.
func TestConnectSplicesBothWaysAndAuditsTheStream(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	br := bufio.NewReader(c)
	resp, body := sendConnect(t, c, br, connectRequest("PUMP-17.localhost.:"+strconv.Itoa(int(echo)), basic("alice", "alice-pw")), nil)
	if resp.StatusCode != http.StatusOK || resp.Status != "200 Connection established" {
		t.Fatalf("CONNECT: %s %q", resp.Status, body)
	}
	var sent int
	for _, m := range []string{"one", "two", strings.Repeat("x", 100_000)} {
		if _, err := io.WriteString(c, m); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(m))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != m {
			t.Fatalf("echo of %d bytes: %v", len(m), err)
		}
		sent += len(m)
	}
	if n := f.p.Open(); n != 1 {
		t.Errorf("Open() = %d with one stream open, want 1", n)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q %v, want EOF", rest, err)
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	want := store.AuditEvent{Kind: store.AuditStream, OK: true, User: "alice", Device: "pump-17", Port: echo,
		Client: testClient.String(), BytesUp: int64(sent), BytesDown: int64(sent)}
	ev.Duration = 0
	if ev != want {
		t.Errorf("audit event\n%+v, want\n%+v", ev, want)
	}
	waitUntil(t, func() bool { return f.p.Open() == 0 })
}

// openStream opens a CONNECT stream as alice to an echo port of pump-17
// (group ops) and checks that it carries bytes.
func openStream(t *testing.T, f *subdomainFixture) (net.Conn, *bufio.Reader) {
	t.Helper()
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	br := bufio.NewReader(c)
	if resp, body := sendConnect(t, c, br, connectRequest("pump-17.localhost:"+strconv.Itoa(int(echo)), "Bearer tok-alice"), nil); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d %q", resp.StatusCode, body)
	}
	io.WriteString(c, "hi")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo %q %v", buf, err)
	}
	return c, br
}

// streamEnds reads the stream until it ends, and fails if that takes more
// than 5 s.
func streamEnds(t *testing.T, br *bufio.Reader) {
	t.Helper()
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, br); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5 s later")
	}
}

// TestRevalidateEndsAConnectStream: when an admin change means the
// credential no longer reaches the device, Revalidate ends the open stream
// and its audit event says why.
func TestRevalidateEndsAConnectStream(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	_, br := openStream(t, f)
	if n := f.p.Open(); n != 1 {
		t.Fatalf("Open() = %d, want 1", n)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	streamEnds(t, br)
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditStream || ev.Reason != "closed: access revoked" || ev.User != "alice" ||
		ev.Device != "pump-17" || ev.BytesUp != 2 || ev.BytesDown != 2 || ev.Client != testClient.String() {
		t.Errorf("audit event %+v", ev)
	}
	waitUntil(t, func() bool { return f.p.Open() == 0 })
}

// TestRevalidateKeepsStreamsThatAreStillAllowed: Revalidate ends nothing
// while Recheck still allows the stream, which carries on.
func TestRevalidateKeepsStreamsThatAreStillAllowed(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	c, br := openStream(t, f)
	if n := f.p.Revalidate(); n != 0 {
		t.Fatalf("Revalidate ended %d, want 0", n)
	}
	io.WriteString(c, "still")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "still" {
		t.Fatalf("after Revalidate: %q %v", buf, err)
	}
	if n := f.p.Open(); n != 1 {
		t.Errorf("Open() = %d, want 1", n)
	}
}

// TestCloseEndsConnectStreamsAndWaitsForThem: Proxy.Close ends every open
// stream and returns only once each has ended and been audited; closing
// is not a revocation.
func TestCloseEndsConnectStreamsAndWaitsForThem(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	var brs []*bufio.Reader
	for range 2 {
		_, br := openStream(t, f)
		brs = append(brs, br)
	}
	if n := f.p.Open(); n != 2 {
		t.Fatalf("Open() = %d, want 2", n)
	}
	closed := make(chan struct{})
	go func() { f.p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting 5 s later")
	}
	// Close has waited: no waiting here.
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after Close", n)
	}
	evs := f.auditEvents()
	if len(evs) != 2 {
		t.Fatalf("%d audit events when Close returned, want 2: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		if ev.Kind != store.AuditStream || strings.Contains(ev.Reason, "revoked") || ev.BytesUp != 2 {
			t.Errorf("audit event %+v", ev)
		}
	}
	for _, br := range brs {
		streamEnds(t, br)
	}
}

// TestConnectOpenSurvivesTheClientsHalfClose: net/http cancels a request's
// context when it reads the client's EOF; the stream open, which may take
// the agent a while, must not end with it. Here the device answers only
// once the request's context has ended.
func TestConnectOpenSurvivesTheClientsHalfClose(t *testing.T) {
	reqCtx := make(chan context.Context, 1)
	f := newProxyFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		select {
		case <-(<-reqCtx).Done():
		case <-time.After(5 * time.Second):
			return nil, errors.New("test: the request's context did not end at the client's half-close")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqCtx <- r.Context()
		(&testFront{p: f.p, next: &f.next}).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	port, got := replyDevice(t, func(in []byte) []byte { return append([]byte("you said: "), in...) })
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, clientFront{"plain", srv.Listener.Addr().String(), false})
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, connectRequest("pump-17.localhost:"+strconv.Itoa(int(port)), "Bearer tok-alice")+"hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	if down, err := io.ReadAll(br); err != nil || string(down) != "you said: hello" {
		t.Fatalf("reply %q %v", down, err)
	}
	if in := <-got; string(in) != "hello" {
		t.Errorf("device read %q", in)
	}
}

// TestConnectAuditCountsEarlyBytes: the stream's audit event counts the
// bytes the client sent behind its CONNECT among those it sent up.
func TestConnectAuditCountsEarlyBytes(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	port, got := replyDevice(t, func(in []byte) []byte { return in })
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	br := bufio.NewReader(c)
	early := []byte("early")
	if resp, body := sendConnect(t, c, br, connectRequest("pump-17.localhost:"+strconv.Itoa(int(port)), "Bearer tok-alice"), early); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d %q", resp.StatusCode, body)
	}
	io.WriteString(c, " and late")
	c.(proxyConn).CloseWrite()
	if down, err := io.ReadAll(br); err != nil || string(down) != "early and late" {
		t.Fatalf("echo %q %v", down, err)
	}
	<-got
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.BytesUp != int64(len("early and late")) || ev.BytesDown != int64(len("early and late")) {
		t.Errorf("audit event counts %d up, %d down; want %d each way", ev.BytesUp, ev.BytesDown, len("early and late"))
	}
}
