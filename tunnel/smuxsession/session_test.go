package smuxsession

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// Tests of the frame reader and the idle cost, over plain TCP on
// 127.0.0.1 with the peer writing raw frames.

// tcpPair returns the two ends of a TCP connection on 127.0.0.1.
func tcpPair(t testing.TB) (server, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); peer.Close() })
	return server, peer
}

// frame encodes one raw frame.
func frame(ver, cmd byte, sid uint32, payload []byte) []byte {
	var h header
	h.put(cmd, len(payload), sid)
	h[0] = ver
	return append(h[:], payload...)
}

// runSession starts a session on conn and returns the channel Run's
// result arrives on.
func runSession(conn net.Conn, cfg Config) (*Session, chan error) {
	s := New(conn, cfg)
	ended := make(chan error, 1)
	go func() { ended <- s.Run() }()
	return s, ended
}

func TestBadFramesEndTheSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  error
	}{
		{"version 1", frame(1, cmdNOP, 0, nil), ErrProtocol},
		{"unknown command", frame(version, 7, 0, nil), ErrProtocol},
		{"NOP with payload", frame(version, cmdNOP, 0, []byte{1}), ErrProtocol},
		{"SYN with payload", frame(version, cmdSYN, 3, []byte{1}), ErrProtocol},
		{"FIN with payload", frame(version, cmdFIN, 2, []byte{1, 2}), ErrProtocol},
		{"short window update", frame(version, cmdUPD, 2, []byte{1, 2, 3}), ErrProtocol},
		{"long window update", frame(version, cmdUPD, 2, make([]byte, 9)), ErrProtocol},
		{"cut header", frame(version, cmdPSH, 2, nil)[:5], io.ErrUnexpectedEOF},
		{"cut payload", frame(version, cmdPSH, 2, []byte("hello"))[:10], io.ErrUnexpectedEOF},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, peer := tcpPair(t)
			s, ended := runSession(srv, Config{})
			st, err := s.OpenStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			peer.Write(tc.bytes)
			peer.(*net.TCPConn).CloseWrite()
			select {
			case err := <-ended:
				if !errors.Is(err, tc.want) {
					t.Fatalf("Run returned %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the session survived")
			}
			if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrSessionClosed) {
				t.Errorf("stream after a protocol error: %v", err)
			}
		})
	}
}

// Frames smux tolerates keep the session: data, FIN and UPD for streams
// that do not exist are dropped, an empty PSH is nothing, and a SYN is
// answered with FIN.
func TestToleratedFrames(t *testing.T) {
	srv, peer := tcpPair(t)
	s, ended := runSession(srv, Config{})
	st, err := s.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	in.Write(frame(version, cmdPSH, 40, []byte("nobody's")))
	in.Write(frame(version, cmdFIN, 40, nil))
	in.Write(frame(version, cmdUPD, 40, make([]byte, 8)))
	in.Write(frame(version, cmdPSH, st.ID(), nil))
	in.Write(frame(version, cmdSYN, 5, nil))
	in.Write(frame(version, cmdPSH, st.ID(), []byte("mine")))
	peer.Write(in.Bytes())

	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "mine" {
		t.Fatalf("read %q, %v", got, err)
	}
	// What the peer received: our SYN, the FIN for its stream 5, the UPD
	// of the first read.
	want := append(append(frame(version, cmdSYN, st.ID(), nil), frame(version, cmdFIN, 5, nil)...),
		frame(version, cmdUPD, st.ID(), []byte{4, 0, 0, 0, 0, 0, 4, 0})...)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	out := make([]byte, len(want))
	if _, err := io.ReadFull(peer, out); err != nil || !bytes.Equal(out, want) {
		t.Fatalf("the peer received % x, %v; want % x", out, err, want)
	}
	select {
	case err := <-ended:
		t.Fatalf("the session ended: %v", err)
	default:
	}
}

// idleSessions starts n sessions with keeper k over TCP, each with a peer
// that drains what the session sends; the channel gets each peer's count
// of frames once its session has closed.
func idleSessions(t *testing.T, n int, k *Keeper) ([]*Session, chan int) {
	frames := make(chan int, n)
	ss := make([]*Session, n)
	for i := range n {
		srv, peer := tcpPair(t)
		go func() {
			buf := make([]byte, 64)
			total := 0
			for {
				m, err := peer.Read(buf)
				total += m
				if err != nil {
					frames <- total / headerSize
					return
				}
			}
		}()
		ss[i], _ = runSession(srv, Config{Keeper: k})
	}
	return ss, frames
}

// An idle session holds one goroutine, the one in Run; the Keeper adds
// one for all of them. Counted from the goroutines' stacks: any goroutine
// running code of this package.
func TestIdleSessionHoldsOneGoroutine(t *testing.T) {
	const sessions = 50
	ss, _ := idleSessions(t, sessions, NewKeeper(time.Hour, time.Hour))
	waitFor(t, func() bool { return ownGoroutines() == sessions+1 })
	for _, s := range ss {
		s.Close()
	}
	// The keeper's goroutine ends with the last session.
	waitFor(t, func() bool { return ownGoroutines() == 0 })
}

// ownGoroutines counts the goroutines whose stack runs a method of this
// package (the tests' own functions are not methods).
func ownGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("/tunnel/smuxsession.(*")) {
			n++
		}
	}
	return n
}

// Keep-alives allocate nothing per period but what writing the NOP costs,
// which on TCP is nothing: no timer, no buffer, no goroutine that allocates.
func TestKeepAliveAllocatesNothing(t *testing.T) {
	const sessions = 50
	const interval = 20 * time.Millisecond
	ss, frames := idleSessions(t, sessions, NewKeeper(interval, time.Hour))
	time.Sleep(2 * interval)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const periods = 10
	time.Sleep(periods * interval)
	runtime.ReadMemStats(&m1)
	for _, s := range ss {
		s.Close()
	}
	sent := 0
	for range sessions {
		sent += <-frames
	}
	if sent < sessions*periods/5 {
		t.Fatalf("the sessions sent %d NOPs in %d periods, want about %d", sent, periods, sessions*periods)
	}
	// The test's own allocations (the sleep's timer, ReadMemStats, the
	// race detector's bookkeeping) are a few; per NOP there must be none.
	if allocs := m1.Mallocs - m0.Mallocs; allocs > uint64(sent/4) {
		t.Errorf("%d allocations for %d keep-alive NOPs", allocs, sent)
	}
	t.Logf("%d sessions, %d frames sent, %d allocations", sessions, sent, m1.Mallocs-m0.Mallocs)
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
