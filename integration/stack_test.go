package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/control"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// stack is a reflector running in this process on 127.0.0.1:0 with real
// TLS, and the agents started against it.
type stack struct {
	t    testing.TB
	srv  *server.Server
	pool *x509.CertPool
	stop context.CancelFunc
	done chan error
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("REFLECTOR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newStack(t testing.TB) *stack {
	t.Helper()
	return newStackConfig(t, server.Config{})
}

// newStackConfig is newStack with the settings of cfg that a test chooses
// (Domain); the listeners, data directory and logger are the test's.
func newStackConfig(t testing.TB, cfg server.Config) *stack {
	t.Helper()
	cfg.Listen, cfg.ProxyListen, cfg.DataDir, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), testLogger(t)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, srv: srv, pool: x509.NewCertPool(), stop: cancel, done: make(chan error, 1)}
	s.pool.AddCert(srv.Certificate().Leaf)
	go func() { s.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return s
}

// addGroups creates the groups that do not exist yet.
func (s *stack) addGroups(groups ...string) {
	s.t.Helper()
	for _, g := range groups {
		if err := s.srv.Store().AddGroup(store.Group{Name: g}); err != nil && !errors.Is(err, store.ErrExists) {
			s.t.Fatal(err)
		}
	}
}

// admin runs an admin command the way `reflector` does: over the control
// socket of the running server. It returns stdout and fails the test on a
// non-zero exit.
func (s *stack) admin(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.adminCode("", args...)
	if code != 0 {
		s.t.Fatalf("reflector %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// adminCode is admin with stdin, returning the exit code instead of failing.
func (s *stack) adminCode(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errOut strings.Builder
	code = control.Main(context.Background(), s.srv.Store().Dir(), args, strings.NewReader(stdin), &out, &errOut, nil)
	return out.String(), errOut.String(), code
}

func (s *stack) addUser(name, password string, admin bool, groups ...string) {
	s.t.Helper()
	s.addGroups(groups...)
	role := store.RoleUser
	if admin {
		role = store.RoleAdmin
	}
	if err := s.srv.Store().AddUser(name, password, role, groups); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) addDevice(d store.Device) string {
	s.t.Helper()
	s.addGroups(d.Groups...)
	secret, err := s.srv.Store().AddDevice(d)
	if err != nil {
		s.t.Fatal(err)
	}
	return secret
}

// startAgent runs the real agent in this process until the test ends and
// waits until its tunnel is registered.
func (s *stack) startAgent(cfg agent.Config) {
	s.t.Helper()
	cfg.ReflectorURL = "https://" + s.srv.Addr().String()
	cfg.Fingerprint = s.srv.Fingerprint()
	a, err := agent.NewWithOptions(cfg, testLogger(s.t), agent.Options{BaseDelay: 50 * time.Millisecond, MaxDelay: 200 * time.Millisecond, UnauthorizedDelay: 100 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	s.t.Cleanup(func() { cancel(); <-done })
	waitFor(s.t, func() bool { _, ok := s.srv.Hub().Status(cfg.DeviceID); return ok })
}

// proxyConn dials the TLS listener as a proxy client would.
func (s *stack) proxyConn() net.Conn {
	s.t.Helper()
	c, err := tls.Dial("tcp", s.srv.Addr().String(), &tls.Config{RootCAs: s.pool, ServerName: "localhost"})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// connect sends CONNECT target with the given Proxy-Authorization (none when
// empty) and returns the connection positioned after the response head.
func (s *stack) connect(conn net.Conn, auth, target string) (*http.Response, *bufio.Reader) {
	s.t.Helper()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(conn, "Proxy-Authorization: %s\r\n", auth)
	}
	io.WriteString(conn, "\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		s.t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp, br
}

// proxyClient is an http.Client that uses the reflector as its HTTPS proxy.
func (s *stack) proxyClient(user, password string) *http.Client {
	u := "https://" + s.srv.Addr().String()
	proxyURL, _ := http.NewRequest("GET", u, nil)
	proxyURL.URL.User = urlUser(user, password)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(proxyURL.URL),
			TLSClientConfig:   &tls.Config{RootCAs: s.pool, ServerName: "localhost"},
			ForceAttemptHTTP2: false,
		},
		Timeout: 30 * time.Second,
	}
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingListener is a TCP listener on 127.0.0.1 that counts the
// connections that reach it: the proof that nothing was dialled.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func listenCounting(t testing.TB) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cl.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return cl
}

func (l *countingListener) port() uint16 { return uint16(l.Addr().(*net.TCPAddr).Port) }

// echoServer is a local TCP echo service (a device port) that half-closes
// when its client does.
func echoServer(t testing.TB) uint16 {
	return serveTCP(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// webServer is a local HTTP server (a device's web UI).
func webServer(t testing.TB, h http.Handler) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// closedPort is a port on 127.0.0.1 where nothing listens.
func closedPort(t testing.TB) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return p
}

// wsEcho is a device's web server that echoes WebSocket messages.
var wsEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, msg); err != nil {
			return
		}
	}
})
