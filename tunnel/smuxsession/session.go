// Package smuxsession is an end of smux protocol version 2, wire-compatible
// with xtaci/smux v1.5.58. The reflector runs it as the smux server, which
// opens streams and accepts none; a session configured with an
// AcceptBacklog also accepts the streams its peer opens, and with Client
// set it takes the smux client's odd stream ids, as the agent's end. It
// exists for fleets: stock smux keeps two 1,024-slot queues, four
// goroutines and a ticker per session; an idle session here holds one
// goroutine (the caller's, in Run), no buffer and no timer. Writes go from
// the writing goroutine to the connection under a lock, and a received
// frame goes from Run to the stream's buffer with no goroutine between;
// keep-alives of all sessions come from one Keeper. The wire is in
// ../PROTOCOL.md, §2.
package smuxsession

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config is a session's settings. Zero fields take smux's defaults.
type Config struct {
	// MaxFrameSize is the largest payload of a frame this end sends
	// (at most 65,535; 0 means that).
	MaxFrameSize int
	// StreamWindow is the receive window this end announces per stream:
	// the most a stream holds received and unread (0: 256 KiB).
	StreamWindow int
	// SessionBuffer caps the bytes all streams hold unread together; while
	// they hold that much, the session reads no more frames (0: 4 MiB).
	SessionBuffer int
	// WriteTimeout bounds one frame's write to the connection: a peer that
	// takes nothing for that long is gone, and the session ends (0: 30 s).
	WriteTimeout time.Duration
	// Keeper sends the session's keep-alives and closes it when the peer
	// falls silent; nil: no keep-alive.
	Keeper *Keeper
	// Client makes this end the smux client: the streams it opens have odd
	// ids, and the peer's have even ones. The default is the server's
	// even ids.
	Client bool
	// AcceptBacklog is how many streams the peer opened may wait for
	// AcceptStream; a stream the peer opens while that many wait is closed
	// at once (FIN). 0: this end accepts no streams, and closes every
	// stream the peer opens.
	AcceptBacklog int
}

func (c Config) withDefaults() Config {
	if c.MaxFrameSize <= 0 || c.MaxFrameSize > 65535 {
		c.MaxFrameSize = 65535
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = 256 << 10
	}
	if c.SessionBuffer <= 0 {
		c.SessionBuffer = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	return c
}

// buffersWriter writes a frame's header and payload as one unit: the
// tunnel's WebSocket adapter makes them one message.
type buffersWriter interface {
	WriteBuffers(v [][]byte) (int, error)
}

// Session is the server end of one smux session over conn. Run reads its
// frames; OpenStream opens streams; any goroutine may write.
type Session struct {
	conn net.Conn
	bw   buffersWriter // conn's WriteBuffers, or nil
	cfg  Config

	// Owned by Run.
	rhdr header
	rupd [updSize]byte

	// tokens is what the streams may still hold unread before Run stops
	// reading (SessionBuffer minus what they hold); tokenWake wakes Run
	// when readers bring it back above zero.
	tokens    atomic.Int64
	tokenWake chan struct{}
	starved   atomic.Bool // Run waits for tokens: the peer's silence means nothing

	mu      sync.Mutex
	streams map[uint32]*Stream // nil while there are none
	nextID  uint32             // the last id opened; ours are even, odd with Client

	// accepts holds the streams the peer opened that AcceptStream has not
	// taken; nil when the session accepts none.
	accepts chan *Stream

	// wlock is held (a value in it) by the one goroutine writing a frame;
	// a channel, so that waiting for it can end with a deadline.
	wlock chan struct{}
	whdr  header    // guarded by wlock
	wvec  [2][]byte // guarded by wlock

	// Keep-alive state, in the Keeper's ticks.
	readTick  atomic.Uint32 // when a frame last arrived
	writeTick atomic.Uint32 // when a frame last left
	pinging   atomic.Bool   // a NOP is on its way
	pingFunc  func()        // s.ping, made once: a go statement on a method value allocates

	closeOnce sync.Once
	done      chan struct{} // closed when the session has ended
	err       error         // why it ended; set before done is closed
}

// New starts a session over conn. The caller runs Run to read it.
func New(conn net.Conn, cfg Config) *Session {
	s := &Session{
		conn:      conn,
		cfg:       cfg.withDefaults(),
		tokenWake: make(chan struct{}, 1),
		wlock:     make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	s.bw, _ = conn.(buffersWriter)
	s.pingFunc = s.ping
	if s.cfg.Client {
		s.nextID = 1 // as smux's client: its first stream is 3
	}
	if s.cfg.AcceptBacklog > 0 {
		s.accepts = make(chan *Stream, s.cfg.AcceptBacklog)
	}
	s.tokens.Store(int64(s.cfg.SessionBuffer))
	if s.cfg.Keeper != nil {
		s.cfg.Keeper.add(s)
	}
	return s
}

// Run reads and dispatches the peer's frames until the session ends, and
// returns why: io.EOF when the peer closed the connection, an error
// wrapping ErrProtocol or ErrKeepAliveTimeout, ErrSessionClosed after
// Close. The session is closed when Run returns.
func (s *Session) Run() error {
	for {
		if !s.waitTokens() {
			return s.err
		}
		if err := s.readFrame(); err != nil {
			s.closeWith(err)
			return s.err
		}
	}
}

// readFrame reads one frame and acts on it.
func (s *Session) readFrame() error {
	if _, err := io.ReadFull(s.conn, s.rhdr[:]); err != nil {
		return readErr(err)
	}
	if k := s.cfg.Keeper; k != nil {
		s.readTick.Store(k.now())
	}
	h := &s.rhdr
	if err := h.check(); err != nil {
		return err
	}
	sid := h.streamID()
	switch h.cmd() {
	case cmdNOP:
	case cmdSYN:
		s.synReceived(sid)
	case cmdFIN:
		if st := s.stream(sid); st != nil {
			st.finReceived()
		}
	case cmdUPD:
		if _, err := io.ReadFull(s.conn, s.rupd[:]); err != nil {
			return readErr(err)
		}
		if st := s.stream(sid); st != nil {
			st.windowUpdate(le32(s.rupd[:4]), le32(s.rupd[4:]))
		}
	case cmdPSH:
		n := h.length()
		if n == 0 {
			return nil
		}
		st := s.stream(sid)
		if st == nil {
			// Data for a stream that is gone: read and dropped, as smux does.
			if _, err := io.CopyN(io.Discard, s.conn, int64(n)); err != nil {
				return readErr(err)
			}
			return nil
		}
		b := getBuf(n)
		if _, err := io.ReadFull(s.conn, *b); err != nil {
			putBuf(b)
			return readErr(err)
		}
		if st.push(b) {
			s.tokens.Add(-int64(n))
		} else {
			putBuf(b)
		}
	}
	return nil
}

// synReceived acts on the peer's SYN for stream sid. A SYN for a stream
// the session has is ignored, as smux ignores it. A new stream is queued
// for AcceptStream when the session accepts streams, the id is the peer's
// (smux: the client's odd, the server's even, never 0) and the backlog has
// room; otherwise it is closed at once with FIN, as the reflector always
// has closed the streams an agent opens (PROTOCOL.md §2).
func (s *Session) synReceived(sid uint32) {
	s.mu.Lock()
	if _, ok := s.streams[sid]; ok || s.isClosed() {
		s.mu.Unlock()
		return
	}
	peers := sid != 0 && sid%2 != s.nextID%2 // nextID has this end's parity
	if s.accepts == nil || !peers || len(s.accepts) == cap(s.accepts) {
		s.mu.Unlock()
		s.writeFrame(cmdFIN, sid, nil, nil)
		return
	}
	st := newStream(sid, s)
	if s.streams == nil {
		s.streams = make(map[uint32]*Stream)
	}
	s.streams[sid] = st
	// Under mu, so that closeWith, which takes the streams under mu, ends
	// this one too; Run is the only sender and the backlog has room.
	s.accepts <- st
	s.mu.Unlock()
}

// AcceptStream returns the next stream the peer opened, waiting for one.
// Once the session has ended it returns why (as Err); a session without an
// AcceptBacklog waits until then.
func (s *Session) AcceptStream() (*Stream, error) {
	return s.Accept(context.Background())
}

// Accept is AcceptStream that also ends, with ctx's error, when ctx does.
// Streams still in the backlog when the session ends are not handed out.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	if s.isClosed() {
		return nil, s.err
	}
	select {
	case st := <-s.accepts:
		return st, nil
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// readErr names the failing step; a clean end of the connection stays io.EOF.
func readErr(err error) error {
	if err == io.EOF {
		return err
	}
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("read frame: connection ended inside a frame: %w", err)
	}
	return fmt.Errorf("read frame: %w", err)
}

// waitTokens waits while the streams hold SessionBuffer unread bytes, and
// reports whether the session is still open.
func (s *Session) waitTokens() bool {
	for s.tokens.Load() <= 0 {
		s.starved.Store(true)
		select {
		case <-s.tokenWake:
		case <-s.done:
			return false
		}
	}
	if s.starved.Load() {
		s.starved.Store(false)
		if k := s.cfg.Keeper; k != nil {
			s.readTick.Store(k.now()) // the wait was ours, not the peer's silence
		}
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// returnTokens gives back n bytes a stream's reader took or dropped.
func (s *Session) returnTokens(n int) {
	if n == 0 {
		return
	}
	if t := s.tokens.Add(int64(n)); t > 0 && t <= int64(n) {
		select {
		case s.tokenWake <- struct{}{}:
		default:
		}
	}
}

// stream returns the open stream sid, or nil.
func (s *Session) stream(sid uint32) *Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[sid]
}

// forget removes st from the session: frames for it are dropped from now on.
func (s *Session) forget(st *Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
		if len(s.streams) == 0 {
			s.streams = nil // a map keeps its buckets; an idle session keeps none
		}
	}
}

// OpenStream opens a stream (an even id, odd with Client): it is
// registered, then its SYN is sent. It returns ErrSessionClosed once the session has ended, ctx's error if ctx
// ends while the connection is busy.
func (s *Session) OpenStream(ctx context.Context) (*Stream, error) {
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	if s.nextID+2 < s.nextID {
		s.mu.Unlock()
		return nil, ErrGoAway
	}
	s.nextID += 2
	st := newStream(s.nextID, s)
	if s.streams == nil {
		s.streams = make(map[uint32]*Stream)
	}
	// Registered before the SYN leaves, so the peer's first frames find it.
	s.streams[st.id] = st
	s.mu.Unlock()
	if err := s.writeFrame(cmdSYN, st.id, nil, ctx.Done()); err != nil {
		s.forget(st)
		if err == errWaitEnded {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return st, nil
}

// NumStreams is the number of streams open in the session.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// errWaitEnded is writeFrame's answer when its cancel channel closed
// before the connection was free; callers turn it into their own error.
var errWaitEnded = fmt.Errorf("wait for the connection ended")

// writeFrame writes one frame from the calling goroutine. It waits for the
// connection while another frame is being written, until cancel is closed
// (then errWaitEnded, and nothing was sent) or the session ends. It returns
// only after the connection is done with payload. An error of the
// connection ends the session.
func (s *Session) writeFrame(cmd byte, sid uint32, payload []byte, cancel <-chan struct{}) error {
	select {
	case s.wlock <- struct{}{}:
	default:
		select {
		case s.wlock <- struct{}{}:
		case <-cancel:
			return errWaitEnded
		case <-s.done:
			return ErrSessionClosed
		}
	}
	if s.isClosed() {
		<-s.wlock
		return ErrSessionClosed
	}
	s.whdr.put(cmd, len(payload), sid)
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	var err error
	if s.bw != nil {
		s.wvec[0], s.wvec[1] = s.whdr[:], payload
		_, err = s.bw.WriteBuffers(s.wvec[:])
		s.wvec[1] = nil
	} else if len(payload) == 0 {
		_, err = s.conn.Write(s.whdr[:])
	} else {
		err = s.writeJoined(payload)
	}
	if k := s.cfg.Keeper; k != nil {
		s.writeTick.Store(k.now())
	}
	<-s.wlock
	if err != nil {
		s.closeWith(fmt.Errorf("write frame: %w", err))
		return ErrSessionClosed
	}
	return nil
}

// writeJoined writes the header and payload in one Write through a pooled
// buffer, for a connection without WriteBuffers; the caller holds wlock.
func (s *Session) writeJoined(payload []byte) error {
	b := getBuf(headerSize + len(payload))
	defer putBuf(b)
	copy(*b, s.whdr[:])
	copy((*b)[headerSize:], payload)
	_, err := s.conn.Write(*b)
	return err
}

// ping sends a keep-alive NOP; the Keeper runs it on a goroutine of its own.
func (s *Session) ping() {
	defer s.pinging.Store(false)
	s.writeFrame(cmdNOP, 0, nil, nil)
}

// Close ends the session: the connection is closed and every stream fails
// with ErrSessionClosed. Run returns.
func (s *Session) Close() error {
	if !s.closeWith(ErrSessionClosed) {
		return ErrSessionClosed
	}
	return nil
}

// closeWith ends the session for reason, once; it reports whether this
// call did.
func (s *Session) closeWith(reason error) bool {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.err = reason
		close(s.done)
		streams := s.streams
		s.streams = nil
		s.mu.Unlock()
		if s.cfg.Keeper != nil {
			s.cfg.Keeper.remove(s)
		}
		s.conn.Close()
		for _, st := range streams {
			st.sessionClosed()
		}
	})
	return first
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended; nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// IsClosed reports whether the session has ended.
func (s *Session) IsClosed() bool { return s.isClosed() }

func (s *Session) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// LocalAddr and RemoteAddr are the connection's.
func (s *Session) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// timeoutErr is a deadline's error, as the net package's.
var timeoutErr error = os.ErrDeadlineExceeded
