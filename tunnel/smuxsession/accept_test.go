package smuxsession_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
	"github.com/xtaci/smux"
)

// The accepting end (Client, AcceptBacklog: the agent's) against stock
// smux as the opener, and against our own opening end, over a real TLS
// WebSocket on 127.0.0.1, as in production.

// opener is the opening end of a pair, stock smux's or ours.
type opener interface {
	open() (net.Conn, error)
	Close() error
}

type stockOpener struct{ s *smux.Session }

func (o stockOpener) open() (net.Conn, error) { return o.s.OpenStream() }
func (o stockOpener) Close() error            { return o.s.Close() }

type ourOpener struct{ s *smuxsession.Session }

func (o ourOpener) open() (net.Conn, error) { return o.s.OpenStream(context.Background()) }
func (o ourOpener) Close() error            { return o.s.Close() }

// acceptLink is one connected pair: the opener (the reflector's end) and
// our accepting end (the agent's).
type acceptLink struct {
	op     opener
	acc    *smuxsession.Session
	accRun chan error // the accepting end's Run returned this
}

// acceptConfig is the agent's production configuration, without keep-alive.
func acceptConfig() smuxsession.Config {
	c := tunnel.AgentMuxConfig()
	c.Keeper = nil
	return c
}

// connectAccepting starts an opener (stock smux's server when stock, else
// ours) behind a TLS WebSocket server, and our accepting end with cfg as
// its client, whose accepted streams are served by h.
func connectAccepting(t *testing.T, stock bool, cfg smuxsession.Config, h func(st *smuxsession.Stream)) *acceptLink {
	t.Helper()
	return connectAcceptingStock(t, stock, tunnel.MuxConfig(), cfg, h)
}

// connectAcceptingStock is connectAccepting with stock smux's settings.
func connectAcceptingStock(t *testing.T, stock bool, scfg *smux.Config, cfg smuxsession.Config, h func(st *smuxsession.Stream)) *acceptLink {
	t.Helper()
	l := &acceptLink{accRun: make(chan error, 1)}
	openers := make(chan opener, 1)
	up := websocket.Upgrader{WriteBufferSize: tunnel.MaxFrameSize + 64, WriteBufferPool: &sync.Pool{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(tunnel.MaxMessage)
		conn := tunnel.NewWSConn(ws)
		if stock {
			s, err := smux.Server(conn, scfg)
			if err != nil {
				t.Error(err)
				return
			}
			openers <- stockOpener{s}
			<-s.CloseChan()
			return
		}
		s := smuxsession.New(conn, smuxsession.Config{
			MaxFrameSize:  tunnel.MaxFrameSize,
			StreamWindow:  tunnel.StreamWindow,
			SessionBuffer: tunnel.SessionBuffer,
		})
		openers <- ourOpener{s}
		s.Run()
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, WriteBufferSize: 64<<10 + 64}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(tunnel.MaxMessage)
	l.acc = smuxsession.New(tunnel.NewWSConn(ws), cfg)
	go func() { l.accRun <- l.acc.Run() }()
	l.op = <-openers
	t.Cleanup(func() { l.op.Close(); l.acc.Close() })
	if h != nil {
		go func() {
			for {
				st, err := l.acc.AcceptStream()
				if err != nil {
					return
				}
				go func() {
					defer st.Close()
					h(st)
				}()
			}
		}()
	}
	return l
}

func echoOurs(st *smuxsession.Stream) {
	io.Copy(st, st)
	st.CloseWrite()
}

// bothOpeners runs f against stock smux and against our opener.
func bothOpeners(t *testing.T, f func(t *testing.T, stock bool)) {
	for _, stock := range []bool{true, false} {
		name := "ours"
		if stock {
			name = "stock"
		}
		t.Run(name, func(t *testing.T) { f(t, stock) })
	}
}

func openStream(t *testing.T, l *acceptLink) net.Conn {
	t.Helper()
	st, err := l.op.open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.SetDeadline(time.Now().Add(30 * time.Second))
	return st
}

func TestAcceptEchoBothWays(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		ids := make(chan uint32, 1)
		l := connectAccepting(t, stock, acceptConfig(), func(st *smuxsession.Stream) {
			ids <- st.ID()
			st.Write([]byte("banner\n"))
			echoOurs(st)
		})
		st := openStream(t, l)
		// The opener writes first (the open header), then reads the banner.
		if _, err := st.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 11)
		if _, err := io.ReadFull(st, got); err != nil || string(got) != "banner\nping" {
			t.Fatalf("banner and echo: %q, %v", got, err)
		}
		if id := <-ids; id%2 != 0 || id == 0 {
			t.Errorf("accepted stream id %d: the server's are even", id)
		}
	})
}

// Several MiB each way through one accepted stream: flow control in both
// directions, from the accepting end's first window update on.
func TestAcceptLargeTransfersBothWays(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		const size = 6 << 20
		l := connectAccepting(t, stock, acceptConfig(), echoOurs)
		st := openStream(t, l)
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i * 7 / 5)
		}
		want := sha256.Sum256(msg)
		werr := make(chan error, 1)
		go func() {
			_, err := st.Write(msg)
			if err == nil {
				err = st.(interface{ CloseWrite() error }).CloseWrite()
			}
			werr <- err
		}()
		h := sha256.New()
		n, err := io.Copy(h, st)
		if err != nil || n != size {
			t.Fatalf("read back %d of %d bytes: %v", n, size, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("the bytes came back changed")
		}
	})
}

// FIN is a half-close both ways on an accepted stream, and a stream whose
// both directions ended is forgotten.
func TestAcceptHalfClose(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		l := connectAccepting(t, stock, acceptConfig(), func(st *smuxsession.Stream) {
			b, _ := io.ReadAll(st) // until the opener's FIN
			st.Write([]byte("got " + string(b)))
			st.CloseWrite()
		})
		st := openStream(t, l)
		st.Write([]byte("request"))
		if err := st.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "got request" {
			t.Fatalf("reply after half-close: %q, %v", b, err)
		}
		waitFor(t, func() bool { return l.acc.NumStreams() == 0 })
	})
}

func TestAcceptSixtyFourConcurrentStreams(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		l := connectAccepting(t, stock, acceptConfig(), echoOurs)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			st := openStream(t, l)
			wg.Go(func() {
				msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
				go func() { st.Write(msg); st.(interface{ CloseWrite() error }).CloseWrite() }()
				got, err := io.ReadAll(st)
				if err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("stream %d: echo differs or failed: %v", i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, func() bool { return l.acc.NumStreams() == 0 })
	})
}

// Closing the accepting session ends its streams and AcceptStream; the
// opener sees the connection go.
func TestAcceptingSessionCloseEndsEverything(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		l := connectAccepting(t, stock, acceptConfig(), nil)
		st := openStream(t, l)
		st.Write([]byte("x"))
		acc, err := l.acc.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		rerr := make(chan error, 1)
		go func() { _, err := io.ReadFull(acc, make([]byte, 2)); rerr <- err }()
		time.Sleep(50 * time.Millisecond)
		l.acc.Close()
		select {
		case err := <-rerr:
			if !errors.Is(err, smuxsession.ErrSessionClosed) {
				t.Errorf("read: %v, want ErrSessionClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("read still waits after Close")
		}
		if _, err := l.acc.AcceptStream(); !errors.Is(err, smuxsession.ErrSessionClosed) {
			t.Errorf("AcceptStream after Close: %v", err)
		}
		io.ReadAll(st) // EOF or an error: the opener's stream ends, it does not hang
	})
}

// The opener going away ends the accepting session: Run and AcceptStream
// return the connection's end.
func TestOpenerGoneEndsAcceptingSession(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		l := connectAccepting(t, stock, acceptConfig(), nil)
		accepted := make(chan error, 1)
		go func() { _, err := l.acc.AcceptStream(); accepted <- err }()
		l.op.Close()
		select {
		case err := <-l.accRun:
			if err == nil || errors.Is(err, smuxsession.ErrSessionClosed) {
				t.Errorf("Run returned %v, want the connection's end", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the accepting session survived its peer")
		}
		if err := <-accepted; err == nil {
			t.Error("AcceptStream returned no error")
		}
	})
}

// A session without AcceptBacklog, and one whose backlog is full, close
// the peer's new stream at once (FIN), and the session goes on.
func TestAcceptBacklogFullClosesTheStream(t *testing.T) {
	bothOpeners(t, func(t *testing.T, stock bool) {
		cfg := acceptConfig()
		cfg.AcceptBacklog = 1
		l := connectAccepting(t, stock, cfg, nil)
		first := openStream(t, l) // waits in the backlog
		second := openStream(t, l)
		if _, err := second.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("stream beyond the backlog: %v, want EOF", err)
		}
		acc, err := l.acc.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		go echoOurs(acc)
		first.Write([]byte("ok"))
		if _, err := io.ReadFull(first, make([]byte, 2)); err != nil {
			t.Fatalf("echo on the stream in the backlog: %v", err)
		}
	})
}

// The accepting end's keep-alive (a Keeper) and stock smux's keep each
// other's session up though nothing else moves, longer than either's
// timeout; a stock peer that sends no keep-alive is found dead.
func TestAcceptingEndKeepAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3 s")
	}
	fast := tunnel.MuxConfig()
	fast.KeepAliveInterval, fast.KeepAliveTimeout = 100*time.Millisecond, time.Second
	cfg := acceptConfig()
	cfg.Keeper = smuxsession.NewKeeper(100*time.Millisecond, time.Second)
	l := connectAcceptingStock(t, true, fast, cfg, echoOurs)

	silent := tunnel.MuxConfig()
	silent.KeepAliveDisabled = true
	dead := connectAcceptingStock(t, true, silent, cfg, nil)
	select {
	case err := <-dead.accRun:
		if !errors.Is(err, smuxsession.ErrKeepAliveTimeout) {
			t.Errorf("session with a silent peer ended with %v, want ErrKeepAliveTimeout", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("a silent peer was not found dead within 3 s (timeout 1 s)")
	}
	time.Sleep(time.Second) // l has been idle for more than both timeouts

	st := openStream(t, l)
	st.Write([]byte("alive"))
	if _, err := io.ReadFull(st, make([]byte, 5)); err != nil {
		t.Fatalf("echo after 2 s of silence: %v", err)
	}
	select {
	case err := <-l.accRun:
		t.Fatalf("accepting session ended: %v", err)
	default:
	}
}
