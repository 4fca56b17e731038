package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Issue 15, item 5, end to end: users who open streams to a device port that
// keeps sending, and read none of them, must not stall the device's tunnel
// for anyone else. One user gets proxy.MaxUserStreams streams to a device,
// the device tunnel.MaxDeviceStreams; the next are refused with 429 and 503.

// stallConnect sends CONNECT target as user on a new TLS connection whose
// receive buffer is small, so that a stream left unread holds its bytes in
// the reflector rather than in this test's socket. It returns the status
// and, on 200, the connection (closed at the test's end); it never fails
// the test, so goroutines may call it.
func (s *stack) stallConnect(user, target string) (int, net.Conn, *bufio.Reader, error) {
	raw, err := net.Dial("tcp", s.srv.Addr().String())
	if err != nil {
		return 0, nil, nil, err
	}
	raw.(*net.TCPConn).SetReadBuffer(16 << 10)
	c := tls.Client(raw, &tls.Config{RootCAs: s.pool, ServerName: "localhost"})
	s.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basic(user, user+"-pass"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0, nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, nil, fmt.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	c.SetDeadline(time.Time{})
	return resp.StatusCode, c, br, nil
}

// stallOpen has user open n streams to target at once and leaves those
// that open unread; it returns how many answers of each status came.
func (s *stack) stallOpen(user, target string, n int) map[int]int {
	s.t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			status, _, _, err := s.stallConnect(user, target)
			if status == 0 {
				s.t.Errorf("CONNECT %s as %s: %v", target, user, err)
			}
			mu.Lock()
			got[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

func TestUnreadStreamsDoNotStallTheDeviceForOthers(t *testing.T) {
	s := newStack(t)
	var flooded atomic.Int64
	flood := serveTCP(t, func(c net.Conn) { // a device port that keeps sending
		c.(*net.TCPConn).SetWriteBuffer(16 << 10) // its bytes wait in the tunnel, not here
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Write(buf)
			flooded.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	echo := echoServer(t)
	users := []string{"mallory", "eve", "trudy", "alice", "u1", "u2", "u3", "u4"}
	for _, u := range users {
		s.addUser(u, u+"-pass", false, "plant-a")
	}
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{flood, echo}})
	floodTarget := fmt.Sprintf("dev1.localhost:%d", flood)
	echoTarget := fmt.Sprintf("dev1.localhost:%d", echo)

	// Mallory opens 32 streams to the flooding port and reads none; two
	// accomplices add theirs: 45 unread streams, far more than the 16 MiB
	// that stalled a tunnel before.
	got := s.stallOpen("mallory", floodTarget, 32)
	for _, u := range []string{"eve", "trudy"} {
		for status, n := range s.stallOpen(u, floodTarget, proxy.MaxUserStreams) {
			if status != http.StatusOK {
				t.Errorf("%s: %d answers %d", u, n, status)
			}
		}
	}
	// Every window is full once the device's writes stop moving.
	waitStill(t, &flooded)
	t.Logf("device sent %d MiB into unread streams", flooded.Load()>>20)

	start := time.Now()
	status, c, br, err := s.stallConnect("alice", echoTarget)
	if status != http.StatusOK {
		t.Fatalf("alice's CONNECT beside the unread streams: %d %v after %v", status, err, time.Since(start).Round(time.Millisecond))
	}
	c.SetDeadline(start.Add(2 * time.Second))
	msg := bytes.Repeat([]byte("alice"), 1<<20/5)
	go c.Write(msg)
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(br, back); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("alice's echo beside the unread streams: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("alice: CONNECT + 1 MiB echo beside %d unread streams: %v", 3*proxy.MaxUserStreams, time.Since(start).Round(time.Millisecond))
	c.Close()

	if got[http.StatusOK] != proxy.MaxUserStreams || got[http.StatusTooManyRequests] != 32-proxy.MaxUserStreams {
		t.Fatalf("mallory's 32 CONNECTs: %v, want %d × 200 and the rest 429", got, proxy.MaxUserStreams)
	}

	// The device's own cap: 45 streams are open; 19 more fill it, and the
	// next is 503 with Retry-After.
	waitFor(t, func() bool { st, _ := s.srv.Hub().Status("dev1"); return st.OpenStreams == 3*proxy.MaxUserStreams })
	left := tunnel.MaxDeviceStreams - 3*proxy.MaxUserStreams
	for _, u := range []string{"u1", "u2", "u3"} {
		n := min(left, proxy.MaxUserStreams)
		if got := s.stallOpen(u, echoTarget, n); got[http.StatusOK] != n {
			t.Fatalf("%s: %v, want %d × 200", u, got, n)
		}
		left -= n
	}
	status, _, _, err = s.stallConnect("u4", echoTarget)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("stream %d to the device: %d, want 503", tunnel.MaxDeviceStreams+1, status)
	}
	if want := fmt.Sprintf("Retry-After %q", tunnel.RetryAfterSeconds(tunnel.BusyRetryAfter)); err == nil || err.Error() != want {
		t.Errorf("503 with %v, want %s", err, want)
	}
}

// waitStill waits until n has not changed for 300 ms.
func waitStill(t *testing.T, n *atomic.Int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, since := n.Load(), time.Now()
	for time.Since(since) < 300*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the device's writes did not stop within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
		if v := n.Load(); v != last {
			last, since = v, time.Now()
		}
	}
}
