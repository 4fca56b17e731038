package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// DefaultOpenTimeout bounds a stream open when the caller's context has no
// deadline: the agent's own local dial times out after 10 s by default.
const DefaultOpenTimeout = 15 * time.Second

// muxTunnel is a device tunnel of our own wire: smux over a WebSocket, the
// reflector being the smux server that opens streams.
type muxTunnel struct {
	sess *smuxsession.Session
}

// NewMuxTunnel wraps the reflector's end of an smux session as a Tunnel.
func NewMuxTunnel(sess *smuxsession.Session) Tunnel {
	return &muxTunnel{sess: sess}
}

func (t *muxTunnel) Close() error          { return t.sess.Close() }
func (t *muxTunnel) Done() <-chan struct{} { return t.sess.Done() }

// Open writes the open header on a new stream and waits for the reply.
func (t *muxTunnel) Open(ctx context.Context, port uint16, client string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultOpenTimeout)
		defer cancel()
	}
	st, err := t.sess.OpenStream(ctx)
	if err != nil {
		return nil, t.openErr(ctx, err)
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
		return nil, t.openErr(ctx, err)
	}
	if status != StatusOK {
		st.Close()
		return nil, &OpenError{Status: status, Message: msg}
	}
	st.SetDeadline(time.Time{})
	return st, nil
}

// openErr is Open's error for err: the caller's cancellation, a timeout,
// the device gone offline, or err itself.
func (t *muxTunnel) openErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("open stream: %w", ctx.Err())
	case isTimeout(err) || ctx.Err() != nil:
		return fmt.Errorf("open stream: %w", ErrTimeout)
	case t.sess.IsClosed() || errors.Is(err, smuxsession.ErrSessionClosed):
		return fmt.Errorf("open stream: %w", ErrDeviceOffline)
	}
	return fmt.Errorf("open stream: %w", err)
}

// isTimeout reports a deadline error, smux's or the net package's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
