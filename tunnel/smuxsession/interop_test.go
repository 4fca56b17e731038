package smuxsession_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
	"github.com/xtaci/smux"
)

// The reflector's end (smuxsession) against the agent's (stock smux with
// tunnel.MuxConfig) over a real TLS WebSocket on 127.0.0.1, as in
// production.

// link is one connected pair: the reflector's session and the agent's.
type link struct {
	srv   *smuxsession.Session
	agent *smux.Session
	ws    *websocket.Conn // the agent's WebSocket
	ended chan error      // the reflector's Run returned this
	// agentEnded is closed when the agent's AcceptStream fails, which is
	// how it learns that the session is gone.
	agentEnded chan struct{}
}

// handler serves one stream the agent accepted.
type handler func(st *smux.Stream)

func echoHandler(st *smux.Stream) {
	io.Copy(st, st)
	st.CloseWrite()
}

// connect starts a reflector end with cfg and an agent with acfg whose
// accepted streams are served by h.
func connect(t *testing.T, cfg smuxsession.Config, acfg *smux.Config, h handler) *link {
	t.Helper()
	l := &link{ended: make(chan error, 1), agentEnded: make(chan struct{})}
	sessions := make(chan *smuxsession.Session, 1)
	up := websocket.Upgrader{WriteBufferSize: tunnel.MaxFrameSize + 64, WriteBufferPool: &sync.Pool{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(tunnel.MaxMessage)
		s := smuxsession.New(tunnel.NewWSConn(ws), cfg)
		sessions <- s
		l.ended <- s.Run()
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, WriteBufferSize: 64<<10 + 64}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.ws = ws
	if acfg == nil {
		acfg = tunnel.MuxConfig()
	}
	l.agent, err = smux.Client(tunnel.NewWSConn(ws), acfg)
	if err != nil {
		t.Fatal(err)
	}
	l.srv = <-sessions
	t.Cleanup(func() { l.agent.Close(); l.srv.Close() })
	go func() {
		defer close(l.agentEnded)
		for {
			st, err := l.agent.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				h(st)
			}()
		}
	}()
	return l
}

// serverConfig is tunnel's production configuration, without keep-alive.
func serverConfig() smuxsession.Config {
	return smuxsession.Config{
		MaxFrameSize:  tunnel.MaxFrameSize,
		StreamWindow:  tunnel.StreamWindow,
		SessionBuffer: tunnel.SessionBuffer,
	}
}

func open(t *testing.T, l *link) *smuxsession.Stream {
	t.Helper()
	st, err := l.srv.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestEchoBothWays(t *testing.T) {
	l := connect(t, serverConfig(), nil, func(st *smux.Stream) {
		st.Write([]byte("banner\n")) // the device speaks first, as SSH does
		echoHandler(st)
	})
	st := open(t, l)
	st.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 7)
	if _, err := io.ReadFull(st, got); err != nil || string(got) != "banner\n" {
		t.Fatalf("banner: %q, %v", got, err)
	}
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, got[:4]); err != nil || string(got[:4]) != "ping" {
		t.Fatalf("echo: %q, %v", got[:4], err)
	}
	if st.ID()%2 != 0 {
		t.Errorf("stream id %d: the server's are even", st.ID())
	}
}

// Several MiB each way through one stream, more than the windows and the
// initial peer window: flow control has to work in both directions.
func TestLargeTransfersBothWays(t *testing.T) {
	const size = 6 << 20 // six windows of 1 MiB; a slow-start window of 256 KiB
	l := connect(t, serverConfig(), nil, echoHandler)
	st := open(t, l)
	st.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i * 7 / 5)
	}
	want := sha256.Sum256(msg)
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(msg)
		if err == nil {
			err = st.CloseWrite()
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
}

// FIN is a half-close in both directions: each side still sends after
// the other's EOF.
func TestHalfCloseBothDirections(t *testing.T) {
	t.Run("reflector first", func(t *testing.T) {
		l := connect(t, serverConfig(), nil, func(st *smux.Stream) {
			b, _ := io.ReadAll(st) // until the reflector's FIN
			st.Write([]byte("got " + string(b)))
			st.CloseWrite()
		})
		st := open(t, l)
		st.SetDeadline(time.Now().Add(5 * time.Second))
		st.Write([]byte("request"))
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("x")); !errors.Is(err, smuxsession.ErrWriteClosed) {
			t.Errorf("write after CloseWrite: %v", err)
		}
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "got request" {
			t.Fatalf("reply after half-close: %q, %v", b, err)
		}
		waitFor(t, func() bool { return l.srv.NumStreams() == 0 }) // both FINs: the stream is gone
	})
	t.Run("agent first", func(t *testing.T) {
		got := make(chan string, 1)
		l := connect(t, serverConfig(), nil, func(st *smux.Stream) {
			st.Write([]byte("hello"))
			st.CloseWrite()
			b, _ := io.ReadAll(st)
			got <- string(b)
		})
		st := open(t, l)
		st.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "hello" {
			t.Fatalf("read until the agent's FIN: %q, %v", b, err)
		}
		if _, err := st.Write([]byte("still here")); err != nil {
			t.Fatalf("write after the agent's FIN: %v", err)
		}
		st.CloseWrite()
		if s := <-got; s != "still here" {
			t.Fatalf("agent read %q", s)
		}
	})
}

func TestDeadlines(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	l := connect(t, serverConfig(), nil, func(st *smux.Stream) { <-block }) // reads and sends nothing
	st := open(t, l)

	start := time.Now()
	st.SetReadDeadline(start.Add(100 * time.Millisecond))
	_, err := st.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
		t.Errorf("read deadline of 100ms ended the read after %v", d)
	}

	// The agent reads nothing: the initial window of 256 KiB fills, then
	// the write waits until its deadline.
	st.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := st.Write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write into a full window: %d bytes, %v", n, err)
	}
	if n != 256<<10 {
		t.Errorf("wrote %d bytes before the deadline, want the initial window (256 KiB)", n)
	}

	// A deadline in the past fails at once; a cleared one waits again.
	st.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a past deadline: %v", err)
	}
	st.SetReadDeadline(time.Time{})
	res := make(chan error, 1)
	go func() { _, err := st.Read(make([]byte, 1)); res <- err }()
	select {
	case err := <-res:
		t.Fatalf("read without deadline returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	st.Close()
	if err := <-res; !errors.Is(err, smuxsession.ErrStreamClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed stream: %v", err)
	}
}

func TestSixtyFourConcurrentStreams(t *testing.T) {
	l := connect(t, serverConfig(), nil, echoHandler)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		st := open(t, l)
		wg.Go(func() {
			st.SetDeadline(time.Now().Add(20 * time.Second))
			msg := bytes.Repeat([]byte{byte(i)}, 64<<10)
			go func() { st.Write(msg); st.CloseWrite() }()
			got, err := io.ReadAll(st)
			if err != nil || !bytes.Equal(got, msg) {
				errs <- errors.New("stream " + st.RemoteAddr().String() + ": echo differs or failed")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, func() bool { return l.srv.NumStreams() == 0 })
}

// The session's receive cap: streams nobody reads hold a window each and
// no more, and while the cap is not reached the others flow. Once they
// hold the cap, the session stops reading (as smux does) and resumes as
// soon as they are read.
func TestReceiveCapWithUnreadStreams(t *testing.T) {
	const window = 256 << 10 // smux's initial peer window: a stream never read holds this much
	flood := func(st *smux.Stream) {
		var b [1]byte
		if _, err := st.Read(b[:]); err != nil || b[0] != 'f' {
			echoHandler(st)
			return
		}
		buf := make([]byte, 16<<10)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	}
	acfg := tunnel.MuxConfig()
	acfg.MaxStreamBuffer = window
	cfg := serverConfig()
	cfg.StreamWindow = window
	cfg.SessionBuffer = 4*window + window/2
	l := connect(t, cfg, acfg, flood)

	echoOnce := func() error {
		st := open(t, l)
		defer st.Close()
		st.SetDeadline(time.Now().Add(time.Second))
		if _, err := st.Write([]byte("e-hello")); err != nil {
			return err
		}
		b := make([]byte, 6)
		_, err := io.ReadFull(st, b)
		return err
	}
	var unread []*smuxsession.Stream
	for range 4 {
		st := open(t, l)
		st.Write([]byte("f"))
		st.Read(make([]byte, 1)) // the first read announces the window
		unread = append(unread, st)
	}
	time.Sleep(200 * time.Millisecond)
	if err := echoOnce(); err != nil {
		t.Fatalf("echo beside 4 unread streams under the cap: %v", err)
	}
	fifth := open(t, l)
	fifth.Write([]byte("f"))
	time.Sleep(200 * time.Millisecond) // the fifth fills the cap
	if err := echoOnce(); err == nil {
		t.Fatal("echo went through with the cap exceeded: the session did not stop reading")
	}
	for _, st := range unread {
		st.Close() // their bytes go back to the cap
	}
	if err := echoOnce(); err != nil {
		t.Fatalf("echo after the unread streams closed: %v", err)
	}
	fifth.Close()
}

// Closing the session ends every stream: a waiting Read, a waiting Write
// (window full) and an open all fail with ErrSessionClosed, and Run
// returns it.
func TestSessionCloseEndsEveryStream(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	l := connect(t, serverConfig(), nil, func(st *smux.Stream) { <-block })
	reader, writer := open(t, l), open(t, l)
	rerr, werr := make(chan error, 1), make(chan error, 1)
	go func() { _, err := reader.Read(make([]byte, 10)); rerr <- err }()
	go func() { _, err := writer.Write(make([]byte, 1<<20)); werr <- err }()
	time.Sleep(100 * time.Millisecond)
	l.srv.Close()
	for name, c := range map[string]chan error{"read": rerr, "write": werr} {
		select {
		case err := <-c:
			if !errors.Is(err, smuxsession.ErrSessionClosed) || !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("%s: %v, want ErrSessionClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still waits after Close", name)
		}
	}
	if _, err := l.srv.OpenStream(t.Context()); !errors.Is(err, smuxsession.ErrSessionClosed) {
		t.Errorf("open after Close: %v", err)
	}
	if err := <-l.ended; !errors.Is(err, smuxsession.ErrSessionClosed) {
		t.Errorf("Run returned %v", err)
	}
	select {
	case <-l.agentEnded: // the agent sees the connection go
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not notice the session's end")
	}
}

// The agent going away ends the session the same way, and the bytes the
// stream received before stay readable.
func TestAgentGoneEndsEveryStream(t *testing.T) {
	l := connect(t, serverConfig(), nil, func(st *smux.Stream) { st.Write([]byte("last words")) })
	st := open(t, l)
	st.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 10)
	if _, err := io.ReadFull(st, b[:4]); err != nil {
		t.Fatal(err)
	}
	l.agent.Close()
	if err := <-l.ended; err == nil || errors.Is(err, smuxsession.ErrSessionClosed) {
		t.Errorf("Run returned %v, want the connection's end", err)
	}
	n, err := io.ReadFull(st, b[4:])
	if err != nil || string(b[:4+n]) != "last words" {
		t.Errorf("held bytes after the session ended: %q, %v", b[:4+n], err)
	}
	if _, err := st.Read(b); !errors.Is(err, smuxsession.ErrSessionClosed) && err != io.EOF {
		t.Errorf("read after the held bytes: %v", err)
	}
	if _, err := st.Write(b); !errors.Is(err, smuxsession.ErrSessionClosed) {
		t.Errorf("write after the session ended: %v", err)
	}
}

// A WebSocket message over the read limit (a peer sending more than one
// frame's worth in one message) ends the session, and nothing panics.
func TestOversizedMessageEndsSession(t *testing.T) {
	l := connect(t, serverConfig(), nil, echoHandler)
	l.ws.WriteMessage(websocket.BinaryMessage, make([]byte, tunnel.MaxMessage+1))
	select {
	case err := <-l.ended:
		if err == nil {
			t.Fatal("Run returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session survived an oversized message")
	}
}

// A stream the agent opens is closed at once; the session goes on.
func TestAgentOpenedStreamIsClosed(t *testing.T) {
	l := connect(t, serverConfig(), nil, echoHandler)
	st, err := l.agent.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("agent's stream: %v, want EOF", err)
	}
	s := open(t, l)
	s.SetDeadline(time.Now().Add(5 * time.Second))
	s.Write([]byte("ok"))
	if _, err := io.ReadFull(s, make([]byte, 2)); err != nil {
		t.Fatalf("echo after the agent's open: %v", err)
	}
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
