package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSlowLoginBodiesAreCutAtTheDeadline is the attack of issue 15, item 7:
// anybody may POST to the login endpoints, and a request that announces
// Content-Length: 16000 and sends no body held its connection and a
// goroutine for as long as the client liked (over 40 s measured; 300 such
// requests held 300 goroutines). Each endpoint now answers 408 once the
// body has not arrived within bodyTimeout, and closes the connection.
func TestSlowLoginBodiesAreCutAtTheDeadline(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 200 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	f := newFixture(t)
	srv := httptest.NewServer(f.a)
	t.Cleanup(srv.Close)

	for _, path := range []string{"/login", "/login/totp", apiTokenPath} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Before srv.Close, which waits for the handler reading this body.
		t.Cleanup(func() { conn.Close() })
		start := time.Now()
		// The test's own limit: today's code would wait for ever.
		conn.SetDeadline(start.Add(5 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
			"Content-Length: 16000\r\n\r\nusername=al", path, adminHost)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("POST %s with a body that never comes: no answer in 5 s", path)
		}
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusRequestTimeout || took > 2*time.Second {
			t.Errorf("POST %s with a body that never comes: %s after %v, want 408 after about %v", path, resp.Status, took, bodyTimeout)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("POST %s: the connection stays open after the 408 (%v)", path, err)
		}
	}
}

// TestALoginFormSentInTimeIsRead: the deadline covers the body only; a
// form that arrives in time signs in, on a connection that stays usable.
func TestALoginFormSentInTimeIsRead(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	f := newFixture(t)
	srv := httptest.NewServer(f.a)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	form := "username=alice&password=alice-pass"
	for range 2 {
		fmt.Fprintf(conn, "POST /login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
			"Content-Length: %d\r\n\r\n%s", adminHost, len(form), form)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Set-Cookie"), SessionCookie) {
			t.Fatalf("login in time: %s %v", resp.Status, resp.Header)
		}
		// Longer than the body's deadline: the connection is still the
		// server's to keep alive.
		time.Sleep(2 * bodyTimeout)
	}
}
