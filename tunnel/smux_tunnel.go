package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xtaci/smux"
)

// DefaultOpenTimeout bounds a stream open when the caller's context has no
// deadline: the agent's own local dial times out after 10 s by default.
const DefaultOpenTimeout = 15 * time.Second

// muxTunnel is a device tunnel of our own wire: smux over a WebSocket, the
// reflector being the smux server that opens streams.
type muxTunnel struct {
	sess *smux.Session
	// sent is closed when the session's connection will read no more of
	// the buffers written to it (wsConn.Done); nil if it cannot tell.
	sent <-chan struct{}
}

// NewMuxTunnel wraps a server-side smux session over conn as a Tunnel.
func NewMuxTunnel(sess *smux.Session, conn net.Conn) Tunnel {
	t := &muxTunnel{sess: sess}
	if d, ok := conn.(interface{ Done() <-chan struct{} }); ok {
		t.sent = d.Done()
	}
	return t
}

func (t *muxTunnel) Close() error          { return t.sess.Close() }
func (t *muxTunnel) Done() <-chan struct{} { return t.sess.CloseChan() }

// Open writes the open header on a new stream and waits for the reply.
func (t *muxTunnel) Open(ctx context.Context, port uint16, client string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultOpenTimeout)
		defer cancel()
	}
	st, err := t.sess.OpenStream()
	if err != nil {
		if t.sess.IsClosed() {
			return nil, fmt.Errorf("open stream: %w", ErrDeviceOffline)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	deadline, _ := ctx.Deadline()
	st.SetDeadline(deadline)
	// A cancelled context (the user went away) ends the wait at once.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })

	var hdr [openFixedLen + maxShortLen]byte
	_, err = st.Write(AppendOpen(hdr[:0], port, client))
	var status Status
	var msg string
	if err == nil {
		status, msg, err = ReadReply(st)
	}
	stop()
	if err != nil {
		st.Close()
		switch {
		case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
			return nil, fmt.Errorf("open stream: %w", ctx.Err())
		case isTimeout(err) || ctx.Err() != nil:
			return nil, fmt.Errorf("open stream: %w", ErrTimeout)
		case t.sess.IsClosed():
			return nil, fmt.Errorf("open stream: %w", ErrDeviceOffline)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if status != StatusOK {
		st.Close()
		return nil, &OpenError{Status: status, Message: msg}
	}
	st.SetDeadline(time.Time{})
	return &muxStream{Stream: st, t: t}, nil
}

// muxStream is an open stream whose Write does not return while smux may
// still read the caller's buffer. When its session closes, smux answers a
// pending write at once (io.ErrClosedPipe) while its sender may still be
// copying that frame into the connection; a caller reusing the buffer then
// races with it (crypto/tls pools its record buffers: found by the race
// detector at shutdown). On an error of a closed session, Write waits until
// the connection has finished its last write, a second at most.
type muxStream struct {
	*smux.Stream
	t *muxTunnel
}

func (s *muxStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	if err != nil && s.t.sent != nil && s.t.sess.IsClosed() {
		select {
		case <-s.t.sent:
		case <-time.After(time.Second):
		}
	}
	return n, err
}

// isTimeout reports a deadline error, smux's or the net package's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
