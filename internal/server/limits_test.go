package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// runServer starts a server on 127.0.0.1:0, with a plain proxy listener,
// and stops it at the end of the test.
func runServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen, cfg.ProxyListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// rawGet sends a GET of / with extra header lines on conn and reads the
// answer.
func rawGet(t *testing.T, conn net.Conn, extra string) *http.Response {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\n%s\r\n", extra); err != nil {
		t.Fatalf("send: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	resp.Body.Close()
	return resp
}

// headerLines makes n bytes or so of header lines.
func headerLines(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "X-Filler-%d: %s\r\n", i, strings.Repeat("a", 1000))
	}
	return b.String()
}

// TestHeadersOver64KiBAre431: a request's header may be 64 KiB on either
// listener (issue 15, item 7); it was Go's default of 1 MiB, which anybody
// could make the server buffer per connection before any check.
func TestHeadersOver64KiBAre431(t *testing.T) {
	s := runServer(t, Config{})
	dials := map[string]func() (net.Conn, error){
		"TLS": func() (net.Conn, error) {
			return tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		},
		"proxy": func() (net.Conn, error) { return net.Dial("tcp", s.ProxyAddr().String()) },
	}
	for name, dial := range dials {
		for _, tc := range []struct {
			size   int
			too431 bool
		}{{48 << 10, false}, {80 << 10, true}} {
			conn, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			resp := rawGet(t, conn, headerLines(tc.size))
			conn.Close()
			if (resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge) != tc.too431 {
				t.Errorf("%s listener, %d KiB of headers: %s", name, tc.size>>10, resp.Status)
			}
		}
	}
}

// closedAtOnce reports whether the server closed conn without a word,
// waiting up to wait for it to.
func closedAtOnce(conn net.Conn, wait time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(wait))
	_, err := conn.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestConnectionsPerAddressAreCapped is the attack of issue 15, item 7: one
// address opened 300 connections that never sent a request (or never sent
// its body), and the server held 300 goroutines for them. Beyond 256
// connections not yet taken over by a handler, the server now closes an
// address's new connections at once.
func TestConnectionsPerAddressAreCapped(t *testing.T) {
	s := runServer(t, Config{})
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range defaultConnsPerAddr {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedAtOnce(extra, 3*time.Second) {
		t.Fatalf("connection %d from one address is still open", defaultConnsPerAddr+1)
	}
	// The plain proxy listener shares the count.
	extra, err = net.Dial("tcp", s.ProxyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedAtOnce(extra, 3*time.Second) {
		t.Fatal("the proxy listener takes connections beyond the cap")
	}
	if closedAtOnce(held[0], 100*time.Millisecond) || closedAtOnce(held[len(held)-1], 100*time.Millisecond) {
		t.Fatal("connections within the cap were closed")
	}

	// One leaves, and the next is let in.
	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if !closedAtOnce(c, 200*time.Millisecond) {
			held = append(held, c)
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a connection that closed still counts")
		}
	}
}

// TestTrustedProxiesAreNotCapped: a --trusted-proxy address carries many
// clients' connections, and limits them itself.
func TestTrustedProxiesAreNotCapped(t *testing.T) {
	s := runServer(t, Config{TrustedProxies: []string{"127.0.0.1"}, ConnsPerAddr: 4})
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range 10 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for i, c := range held {
		if closedAtOnce(c, 50*time.Millisecond) {
			t.Fatalf("connection %d from a trusted proxy closed", i+1)
		}
	}
}

// TestHijackedConnectionsLeaveTheCount: a connection a handler takes over
// (a CONNECT splice, an agent's tunnel, a WebSocket) has passed
// authentication, and many of them may share one address (agents behind
// one NAT), so it no longer counts against the cap.
func TestHijackedConnectionsLeaveTheCount(t *testing.T) {
	limit := newConnLimiter(2, nil, nil)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			io.WriteString(w, "ok")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, c) // held until the client closes
		c.Close()
	})
	srv := newHTTPServer(h, slog.New(slog.DiscardHandler), limit)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(limit.Listener(ln))
	t.Cleanup(func() { srv.Close() })

	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		return c
	}
	for range 5 {
		c := dial()
		fmt.Fprintf(c, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("hijacked request: %v %v", resp, err)
		}
	}
	a, b := dial(), dial()
	if closedAtOnce(a, 50*time.Millisecond) || closedAtOnce(b, 50*time.Millisecond) {
		t.Fatal("hijacked connections count against the cap")
	}
	if c := dial(); !closedAtOnce(c, 3*time.Second) {
		t.Fatal("the third connection not taken over is still open")
	}
}
