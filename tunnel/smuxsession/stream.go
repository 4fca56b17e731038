package smuxsession

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Stream is one stream of a session, a net.Conn with CloseWrite. Read
// returns io.EOF once the peer has sent FIN and every byte before it was
// read; Write blocks while the peer's window is full.
type Stream struct {
	id   uint32
	sess *Session

	rwake chan struct{} // a Read may go on: data, FIN, close
	wwake chan struct{} // a Write may go on: window update, close
	rdl   deadline
	wdl   deadline

	// wmu orders the stream's frames: a Write's frames, then its FIN.
	wmu  sync.Mutex
	sent uint32 // bytes sent since the open (mod 2³²); guarded by wmu

	mu sync.Mutex
	// Receive side.
	q        recvQueue
	consumed uint32 // bytes the reader took (mod 2³²), announced in UPD
	unacked  uint32 // consumed since the last UPD
	acked    bool   // an UPD has been sent
	finIn    bool   // the peer sent FIN
	// Send side.
	peerConsumed uint32
	peerWindow   uint32
	finOut       bool // FIN sent or being sent: no more writes
	// Both.
	closed bool // Close was called
	gone   bool // the session ended
}

func newStream(id uint32, s *Session) *Stream {
	return &Stream{
		id:         id,
		sess:       s,
		rwake:      make(chan struct{}, 1),
		wwake:      make(chan struct{}, 1),
		peerWindow: initialPeerWindow,
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues a payload from the peer; false if nobody will read it (data
// after the peer's own FIN is dropped too).
func (st *Stream) push(b *[]byte) bool {
	st.mu.Lock()
	if st.closed || st.gone || st.finIn {
		st.mu.Unlock()
		return false
	}
	st.q.push(b)
	st.mu.Unlock()
	wake(st.rwake)
	return true
}

func (st *Stream) finReceived() {
	st.mu.Lock()
	st.finIn = true
	done := st.finOut && st.q.held == 0
	st.mu.Unlock()
	wake(st.rwake)
	if done {
		st.sess.forget(st)
	}
}

func (st *Stream) windowUpdate(consumed, window uint32) {
	st.mu.Lock()
	st.peerConsumed, st.peerWindow = consumed, window
	st.mu.Unlock()
	wake(st.wwake)
}

// sessionClosed fails the stream: its session has ended.
// What it holds stays readable, as in smux, until Close drops it.
func (st *Stream) sessionClosed() {
	st.mu.Lock()
	st.gone = true
	st.mu.Unlock()
	wake(st.rwake)
	wake(st.wwake)
}

// Read reads what the peer sent. Every half window taken (and the first
// read) tells the peer with an UPD frame, as smux does.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		st.mu.Lock()
		if st.q.held > 0 && !st.closed {
			n := st.q.read(p)
			st.consumed += uint32(n)
			st.unacked += uint32(n)
			ack := !st.acked || st.unacked >= uint32(st.sess.cfg.StreamWindow/2)
			if ack {
				st.acked = true
				st.unacked = 0
			}
			consumed := st.consumed
			done := st.finIn && st.finOut && st.q.held == 0
			st.mu.Unlock()
			st.sess.returnTokens(n)
			if ack {
				st.sendUpdate(consumed)
			}
			if done {
				st.sess.forget(st)
			}
			return n, nil
		}
		err := st.readErrLocked()
		st.mu.Unlock()
		if err != nil {
			return 0, err
		}
		select {
		case <-st.rwake:
		case <-st.sess.done:
		case <-st.rdl.wait():
			return 0, timeoutErr
		}
	}
}

// readErrLocked is why a Read with nothing held ends, or nil to wait.
func (st *Stream) readErrLocked() error {
	switch {
	case st.closed:
		return ErrStreamClosed
	case st.finIn: // the peer ended cleanly, whatever came after
		return io.EOF
	case st.gone || st.sess.isClosed():
		return ErrSessionClosed
	}
	return nil
}

// sendUpdate tells the peer how much was read and the window. A failure
// ends the session, which the next Read reports.
func (st *Stream) sendUpdate(consumed uint32) {
	var p [updSize]byte
	binary.LittleEndian.PutUint32(p[:4], consumed)
	binary.LittleEndian.PutUint32(p[4:], uint32(st.sess.cfg.StreamWindow))
	st.sess.writeFrame(cmdUPD, st.id, p[:], nil)
}

// Write sends p in frames of at most MaxFrameSize, each once the peer's
// window has room. It returns once the connection is done with p.
func (st *Stream) Write(p []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		st.mu.Lock()
		err := st.writeErrLocked()
		inflight := int64(int32(st.sent - st.peerConsumed))
		room := int64(st.peerWindow) - inflight
		st.mu.Unlock()
		if err != nil {
			return total, err
		}
		if inflight < 0 {
			return total, fmt.Errorf("%w: the peer consumed %d bytes more than were sent", ErrProtocol, -inflight)
		}
		if room <= 0 {
			select {
			case <-st.wwake:
			case <-st.sess.done:
			case <-st.wdl.wait():
				return total, timeoutErr
			}
			continue
		}
		n := min(int64(len(p)), room, int64(st.sess.cfg.MaxFrameSize))
		switch err := st.sess.writeFrame(cmdPSH, st.id, p[:n], st.wdl.wait()); err {
		case nil:
		case errWaitEnded:
			return total, timeoutErr
		default:
			return total, err
		}
		st.sent += uint32(n)
		total += int(n)
		p = p[n:]
	}
	return total, nil
}

func (st *Stream) writeErrLocked() error {
	switch {
	case st.closed:
		return ErrStreamClosed
	case st.gone || st.sess.isClosed():
		return ErrSessionClosed
	case st.finOut:
		return ErrWriteClosed
	}
	return nil
}

// CloseWrite sends FIN: the peer reads EOF after what was written, and may
// go on sending.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	if err := st.writeErrLocked(); err != nil {
		st.mu.Unlock()
		return err
	}
	st.finOut = true
	st.mu.Unlock()
	wake(st.wwake)
	st.wmu.Lock()
	err := st.sess.writeFrame(cmdFIN, st.id, nil, nil)
	st.wmu.Unlock()
	st.mu.Lock()
	done := st.finIn && st.q.held == 0
	st.mu.Unlock()
	if done {
		st.sess.forget(st)
	}
	return err
}

// Close ends the stream both ways: what it holds unread is dropped, the
// peer gets FIN unless it has, and frames for the stream are dropped.
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return ErrStreamClosed
	}
	st.closed = true
	fin := !st.finOut && !st.gone
	st.finOut = true
	n := st.q.drop()
	st.mu.Unlock()
	st.sess.returnTokens(n)
	st.sess.forget(st)
	wake(st.rwake)
	wake(st.wwake)
	st.rdl.set(time.Time{})
	st.wdl.set(time.Time{})
	if !fin {
		return nil
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if err := st.sess.writeFrame(cmdFIN, st.id, nil, nil); err != ErrSessionClosed {
		return err
	}
	return nil
}

// SetDeadline, SetReadDeadline and SetWriteDeadline are net.Conn's: a
// Read or Write waiting when its deadline passes returns an error for which
// errors.Is(err, os.ErrDeadlineExceeded); the zero time means none.
func (st *Stream) SetDeadline(t time.Time) error {
	st.rdl.set(t)
	st.wdl.set(t)
	return nil
}

func (st *Stream) SetReadDeadline(t time.Time) error  { st.rdl.set(t); return nil }
func (st *Stream) SetWriteDeadline(t time.Time) error { st.wdl.set(t); return nil }

// ID is the stream's id in the session: the smux server's streams have
// even ids, the client's odd ones.
func (st *Stream) ID() uint32 { return st.id }

// LocalAddr and RemoteAddr are the session connection's.
func (st *Stream) LocalAddr() net.Addr  { return st.sess.conn.LocalAddr() }
func (st *Stream) RemoteAddr() net.Addr { return st.sess.conn.RemoteAddr() }
