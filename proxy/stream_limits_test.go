package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Issue 15, item 5: one user may hold MaxUserStreams streams to one device,
// so that no user takes all of a device's tunnel.MaxDeviceStreams; a device
// that has them all answers 503.

// newLimitsFixture is the subdomain fixture with proxy credentials for
// alice (alice-pw, group ops) and root (root-pw, admin), devices dev1 and
// dev2 in group ops, and dial as the hub's Dial when it is not nil.
func newLimitsFixture(t *testing.T, dial func(ctx context.Context, device string, port uint16, client netip.Addr) (net.Conn, error)) *subdomainFixture {
	t.Helper()
	f := newSubdomainFixture(t, func(c *Config) {
		c.Authenticate = func(_ context.Context, _ netip.Addr, user, secret string) (store.Credential, error) {
			if u, ok := testUsers[user]; ok && secret == user+"-pw" {
				return store.Credential{User: u}, nil
			}
			return store.Credential{}, store.ErrBadCredentials
		}
		if dial != nil {
			c.Dial = dial
		}
	})
	f.setDevice(store.Device{ID: "dev1", Groups: []string{"ops"}})
	f.setDevice(store.Device{ID: "dev2", Groups: []string{"ops"}})
	return f
}

// limitsConnect sends CONNECT target as user over a new TLS connection to
// the front and returns the answer; on 200 the connection and its reader
// carry the stream, and the test's end closes them.
func limitsConnect(t *testing.T, f *subdomainFixture, user, target string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", f.front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basic(user, user+"-pw"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s as %s: %v", target, user, err)
	}
	return resp, c, br
}

// limitsEcho checks that the stream c, br echoes.
func limitsEcho(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

func TestConnectStreamsPerUserAndDeviceAreCapped(t *testing.T) {
	f := newLimitsFixture(t, nil)
	echo := tcpEcho(t)
	target := func(device string) string { return device + ".localhost:" + strconv.Itoa(int(echo)) }

	var first net.Conn
	for i := range MaxUserStreams {
		resp, c, br := limitsConnect(t, f, "alice", target("dev1"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("alice's stream %d: status %d", i+1, resp.StatusCode)
		}
		limitsEcho(t, c, br)
		if first == nil {
			first = c
		}
	}
	dials := f.dials.Load()
	resp, _, _ := limitsConnect(t, f, "alice", target("dev1"))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's stream %d: status %d %q, want 429", MaxUserStreams+1, resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Error("429 without Retry-After")
	}
	if want := fmt.Sprintf("at most %d per user and device", MaxUserStreams); !strings.Contains(string(body), want) {
		t.Errorf("body %q does not say %q", body, want)
	}
	if n := f.dials.Load() - dials; n != 0 {
		t.Errorf("the refused stream was dialled (%d dials)", n)
	}

	// One user's cap stops neither another user nor the same user's
	// streams to another device.
	for _, tc := range []struct{ user, device string }{{"root", "dev1"}, {"alice", "dev2"}} {
		resp, c, br := limitsConnect(t, f, tc.user, target(tc.device))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s to %s beside alice's %d streams to dev1: status %d", tc.user, tc.device, MaxUserStreams, resp.StatusCode)
		}
		limitsEcho(t, c, br)
	}

	// A stream that ends gives its slot back.
	open := f.p.Open()
	first.Close()
	waitUntil(t, func() bool { return f.p.Open() == open-1 })
	resp, c, br := limitsConnect(t, f, "alice", target("dev1"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's stream after one ended: status %d", resp.StatusCode)
	}
	limitsEcho(t, c, br)
}

func TestConnectRefusedBeforeTheDialGivesItsSlotBack(t *testing.T) {
	f := newLimitsFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, tunnel.ErrRefused)
	})
	for i := range MaxUserStreams + 1 {
		resp, _, _ := limitsConnect(t, f, "alice", "dev1.localhost:22")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("attempt %d: status %d, want 502", i+1, resp.StatusCode)
		}
	}
	if n := f.p.Open(); n != 0 {
		t.Fatalf("%d grants left by failed opens", n)
	}
}

func TestDeviceBusyIs503WithRetryAfter(t *testing.T) {
	f := newLimitsFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, tunnel.ErrDeviceBusy)
	})
	resp, _, _ := limitsConnect(t, f, "alice", "dev1.localhost:22")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d %q, want 503", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Retry-After"), tunnel.RetryAfterSeconds(tunnel.BusyRetryAfter); got != want {
		t.Errorf("Retry-After %q, want %q", got, want)
	}
	if !strings.Contains(string(body), "device busy") {
		t.Errorf("body %q", body)
	}
}

// TestDeviceHostBusyIs503WithRetryAfter: a device host's request to a
// device whose streams are all taken got 503 without the Retry-After the
// proxy's 503 has.
func TestDeviceHostBusyIs503WithRetryAfter(t *testing.T) {
	f := newLimitsFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, tunnel.ErrDeviceBusy)
	})
	resp := f.get("https://dev1.localhost/", "alice")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "device busy") {
		t.Fatalf("status %d %q, want 503 device busy", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Retry-After"), tunnel.RetryAfterSeconds(tunnel.BusyRetryAfter); got != want {
		t.Errorf("Retry-After %q, want %q", got, want)
	}
	if got := absoluteGetAs(t, f, "http://dev1.localhost/", "alice"); got.StatusCode != http.StatusServiceUnavailable || got.Header.Get("Retry-After") == "" {
		t.Errorf("absolute-form: %d, Retry-After %q; want 503 with Retry-After", got.StatusCode, got.Header.Get("Retry-After"))
	}
}

func TestStatusForStreamLimits(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("dial device d: %w", tunnel.ErrDeviceBusy), http.StatusServiceUnavailable},
		{fmt.Errorf("user u, device d: %w", ErrTooManyStreams), http.StatusTooManyRequests},
	} {
		if got, _ := statusFor(tc.err); got != tc.want {
			t.Errorf("statusFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
		h := http.Header{}
		if _, ok := tunnel.RetryLater(h, tc.err); !ok || h.Get("Retry-After") == "" {
			t.Errorf("%v: no Retry-After", tc.err)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", ErrTooManyStreams), ErrTooManyStreams) {
		t.Error("ErrTooManyStreams does not match itself wrapped")
	}
}

func TestClientToolStreamsPerUserAndDeviceAreCapped(t *testing.T) {
	f := newLimitsFixture(t, nil)
	echo := int(tcpEcho(t))
	for i := range MaxUserStreams {
		ws, resp, err := f.wtDial("dev1.localhost", wtHeader(basic("alice", "alice-pw"), echo), false)
		if err != nil {
			t.Fatalf("alice's client-tool stream %d: %v (%v)", i+1, err, resp)
		}
		t.Cleanup(func() { ws.Close() })
		wsPing(t, ws)
	}
	_, resp, err := f.wtDial("dev1.localhost", wtHeader(basic("alice", "alice-pw"), echo), false)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's client-tool stream %d: %v, want 429", MaxUserStreams+1, err)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// CONNECT and client-tool streams share the cap.
	cresp, _, _ := limitsConnect(t, f, "alice", "dev1.localhost:"+strconv.Itoa(echo))
	if cresp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's CONNECT beside %d client-tool streams: status %d, want 429", MaxUserStreams, cresp.StatusCode)
	}
	ws, _, err := f.wtDial("dev1.localhost", wtHeader(basic("root", "root-pw"), echo), false)
	if err != nil {
		t.Fatalf("root beside alice's streams: %v", err)
	}
	defer ws.Close()
	wsPing(t, ws)
}

// wsPing checks that a client tool's stream echoes: then it is spliced, and
// the proxy's Close waits for it.
func wsPing(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "ping" {
		t.Fatalf("client-tool echo: %q, %v", msg, err)
	}
}

// TestForwardedRequestsPerUserAndDeviceAreCapped: forwarded HTTP requests
// counted toward MaxUserStreams but were never refused by it, so one user's
// requests that read no answer held as many of a device's streams as
// CONNECT may not: the next is 429 with Retry-After, absolute-form and on
// device hosts, while another user still gets through.
func TestForwardedRequestsPerUserAndDeviceAreCapped(t *testing.T) {
	f := newLimitsFixture(t, nil)
	release := make(chan struct{})
	entered := make(chan struct{}, MaxUserStreams+2)
	f.addDevice(store.Device{ID: "dev1", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	var held sync.WaitGroup
	defer held.Wait()
	defer close(release)
	for i := range MaxUserStreams {
		conn, err := tls.Dial("tcp", f.front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET http://dev1.localhost/hold HTTP/1.1\r\nHost: dev1.localhost\r\nProxy-Authorization: %s\r\n\r\n", basic("alice", "alice-pw"))
		held.Go(func() { io.Copy(io.Discard, conn) }) // until the answer and the close
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("alice's request %d did not reach the device", i+1)
		}
	}
	resp := absoluteGetAs(t, f, "http://dev1.localhost/", "alice")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, fmt.Sprintf("at most %d per user and device", MaxUserStreams)) {
		t.Errorf("absolute-form request %d: %d, Retry-After %q, %q; want 429 with Retry-After", MaxUserStreams+1, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	sub := f.get("https://dev1.localhost/", "alice")
	if body := readBody(t, sub); sub.StatusCode != http.StatusTooManyRequests || sub.Header.Get("Retry-After") == "" {
		t.Errorf("device host request beside %d: %d, Retry-After %q, %q; want 429 with Retry-After", MaxUserStreams, sub.StatusCode, sub.Header.Get("Retry-After"), body)
	}
	if got := absoluteGetAs(t, f, "http://dev1.localhost/", "root"); got.StatusCode != http.StatusOK {
		t.Errorf("root beside alice's %d requests: %d", MaxUserStreams, got.StatusCode)
	}
}
