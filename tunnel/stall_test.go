package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/smux"
)

// Issue 15, item 5: one user could stall a device for everyone by opening
// many streams to a port that keeps sending and reading none of them. The
// unread bytes of all streams filled the session's receive buffer and smux
// stopped reading the tunnel, for every stream.

const (
	stallStreams = 32                      // unread streams the test opens
	echoWithin   = 2 * time.Second         // what the other stream is given
	oldBuffer    = LegacySessionBuffer     // the session buffer of agents in the field
	floodPort    = 9                       // keeps sending, as long as it may
	sinkPort     = 10                      // reads nothing
	echoPort     = 7                       // echoes
	stallPorts   = "7,9,10"                // the agent's allow-list
	stallDevice  = "dev1"                  // the device under attack
	stallSecret  = "secret-" + stallDevice // its secret in newTestReflector

	// chunk is what the test's writers write at a time; a write blocked
	// on a full window has not counted its chunk yet.
	chunk = 32 << 10
	// windowsFull is what stallStreams streams hold once each has its
	// window full, give or take the chunk in flight.
	windowsFull = stallStreams * (StreamWindow - chunk)
)

// stallAgent is a device whose flood port writes without end and whose sink
// port never reads; it counts what the flood streams put on the tunnel.
type stallAgent struct {
	flooded atomic.Int64
}

func (a *stallAgent) answer(st *smux.Stream, req OpenRequest) {
	switch req.Port {
	case floodPort:
		WriteReply(st, StatusOK, "")
		buf := make([]byte, chunk)
		for {
			n, err := st.Write(buf)
			a.flooded.Add(int64(n))
			if err != nil {
				return
			}
		}
	case sinkPort:
		WriteReply(st, StatusOK, "")
		<-st.GetDieCh() // until the reflector closes it: never read
	default:
		echo(st, req)
	}
}

// connectAgentWith is connectAgent for the stall device, with the agent's
// own smux configuration, so a test can play an agent of an older release.
func (r *testReflector) connectAgentWith(t *testing.T, cfg *smux.Config, answer answerFunc) {
	t.Helper()
	r.connectAgentConfig(t, stallDevice, stallSecret, stallPorts, cfg, answer)
}

// oldAgentConfig is the smux configuration of agents released before the
// fix: the same, but a 16 MiB session buffer.
func oldAgentConfig() *smux.Config {
	cfg := MuxConfig()
	cfg.MaxReceiveBuffer = oldBuffer
	return cfg
}

// openUnread opens n streams to port and returns them, to be left unread.
func openUnread(t *testing.T, hub *Hub, n int, port uint16) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		// Not one after the other: on a stalled tunnel each close waits
		// 30 s for its FIN to be sent, until the agent's session is closed.
		for _, c := range conns {
			go c.Close()
		}
	})
	for i := range n {
		c, err := hub.Dial(context.Background(), stallDevice, port, netip.Addr{})
		if err != nil {
			t.Fatalf("stream %d of %d: %v", i+1, n, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// echoMiB opens one more stream to the echo port and sends 1 MiB through it
// and back, all within echoWithin; it returns how long that took.
func echoMiB(t *testing.T, hub *Hub) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), echoWithin)
	defer cancel()
	conn, err := hub.Dial(ctx, stallDevice, echoPort, netip.Addr{})
	if err != nil {
		t.Fatalf("open beside the unread streams: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(echoWithin))
	msg := bytes.Repeat([]byte("echo"), 1<<18) // 1 MiB
	go conn.Write(msg)
	got := make([]byte, len(msg))
	if n, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("1 MiB echo beside the unread streams: %d bytes back, %v after %v", n, err, time.Since(start).Round(time.Millisecond))
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo: bytes differ")
	}
	d := time.Since(start)
	t.Logf("open + 1 MiB echo beside the unread streams: %v", d.Round(time.Millisecond))
	return d
}

// waitFlooded waits until the flood streams have put want bytes on the
// tunnel, or fails saying how far they got.
func waitFlooded(t *testing.T, a *stallAgent, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for a.flooded.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the flood streams put %d MiB on the tunnel, want %d MiB: the tunnel stalled",
				a.flooded.Load()>>20, want>>20)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The attack of the issue: the device sends on every stream, the user reads
// none. Another open and a 1 MiB echo on the same device must still go
// through, for an agent of this release and one from before it alike: this
// direction depends on the reflector's buffer only.
func TestUnreadStreamsDoNotStallTheDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *smux.Config
	}{
		{"agent", MuxConfig()},
		{"old agent", oldAgentConfig()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReflector(t)
			a := &stallAgent{}
			r.connectAgentWith(t, tc.cfg, a.answer)
			openUnread(t, r.hub, stallStreams, floodPort)
			// Most of the old session buffer's worth is on the tunnel:
			// smux's reader stopped a moment later before the fix.
			waitFlooded(t, a, oldBuffer*3/4)
			echoMiB(t, r.hub)
			// Every unread stream then holds a whole window, no more, and
			// the device is still reachable.
			waitFlooded(t, a, windowsFull)
			echoMiB(t, r.hub)
		})
	}
}

// The other direction: the user sends on every stream, the device port
// reads none. The agent's buffer decides here, so this holds for agents of
// this release; an old agent's 16 MiB hold the streams of one user
// (proxy.MaxUserStreams, 15), not more.
func TestUnreadStreamsToTheDeviceDoNotStallIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     *smux.Config
		streams int
	}{
		{"agent", MuxConfig(), stallStreams},
		{"old agent, one user's streams", oldAgentConfig(), oldBuffer/StreamWindow - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReflector(t)
			r.connectAgentWith(t, tc.cfg, (&stallAgent{}).answer)
			pushUnread(t, r.hub, tc.streams)
			echoMiB(t, r.hub)
		})
	}
}

// pushUnread opens n streams to the sink port and writes into each until
// its window is full.
func pushUnread(t *testing.T, hub *Hub, n int) {
	t.Helper()
	var pushed atomic.Int64
	for _, c := range openUnread(t, hub, n, sinkPort) {
		go func() {
			buf := make([]byte, chunk)
			for {
				n, err := c.Write(buf)
				pushed.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	full := int64(n) * (StreamWindow - chunk)
	deadline := time.Now().Add(10 * time.Second)
	for pushed.Load() < full {
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d MiB toward the device, want %d MiB: the tunnel stalled", pushed.Load()>>20, full>>20)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A device takes MaxDeviceStreams streams, all of them unread if so be:
// the last still carries its echo, the next open is refused at once with
// ErrDeviceBusy without reaching the device, and a closed stream frees its
// slot.
func TestDeviceStreamCap(t *testing.T) {
	r := newTestReflector(t)
	a := &stallAgent{}
	var opens atomic.Int64
	r.connectAgentWith(t, MuxConfig(), func(st *smux.Stream, req OpenRequest) {
		opens.Add(1)
		a.answer(st, req)
	})
	unread := openUnread(t, r.hub, MaxDeviceStreams-1, floodPort)
	waitFlooded(t, a, (MaxDeviceStreams-1)*(StreamWindow-chunk))

	last, err := r.hub.Dial(context.Background(), stallDevice, echoPort, netip.Addr{})
	if err != nil {
		t.Fatalf("stream %d of %d: %v", MaxDeviceStreams, MaxDeviceStreams, err)
	}
	last.SetDeadline(time.Now().Add(echoWithin))
	msg := bytes.Repeat([]byte("last"), 1<<18)
	go last.Write(msg)
	if _, err := io.ReadFull(last, make([]byte, len(msg))); err != nil {
		t.Fatalf("echo on the last stream beside %d unread ones: %v", MaxDeviceStreams-1, err)
	}
	if st, _ := r.hub.Status(stallDevice); st.OpenStreams != MaxDeviceStreams {
		t.Fatalf("OpenStreams %d, want %d", st.OpenStreams, MaxDeviceStreams)
	}

	before := opens.Load()
	start := time.Now()
	_, err = r.hub.Dial(context.Background(), stallDevice, echoPort, netip.Addr{})
	if !errors.Is(err, ErrDeviceBusy) {
		t.Fatalf("stream %d: %v, want ErrDeviceBusy", MaxDeviceStreams+1, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("refusal took %v", d)
	}
	if _, ok := RetryLater(nil, err); !ok {
		t.Error("ErrDeviceBusy is not Throttled: no Retry-After")
	}
	if n := opens.Load() - before; n != 0 {
		t.Errorf("a refused open reached the device (%d opens)", n)
	}

	unread[0].Close()
	echoMiB(t, r.hub)
	last.Close()
	for _, c := range unread {
		c.Close()
	}
	waitFor(t, func() bool { st, _ := r.hub.Status(stallDevice); return st.OpenStreams == 0 })
}
