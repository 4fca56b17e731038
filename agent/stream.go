package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"

	"github.com/reflector-dev/reflector/tunnel"
)

// headerTimeout bounds reading a stream's open header and writing the reply:
// the reflector sends the header right after opening the stream.
const headerTimeout = 10 * time.Second

// serveStream answers one stream the reflector opened: it reads the open
// header, checks the port against the allow-list, dials the local port and
// replies, and on success joins the stream and the local connection until
// both are done or ctx ends. It always closes st.
func (a *Agent) serveStream(ctx context.Context, st net.Conn) {
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	req, err := tunnel.ReadOpen(st)
	if err != nil {
		a.log.Debug("stream without a valid open header", "err", err)
		if errors.Is(err, tunnel.ErrBadHeader) { // a newer reflector: say so
			a.reply(st, tunnel.StatusOther, "unsupported open header")
		}
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	log := a.log.With("port", req.Port, "client", req.Client)

	if !slices.Contains(a.cfg.Ports, req.Port) {
		log.Debug("stream refused: port not allowed")
		a.reply(st, tunnel.StatusNotAllowed, "port not allowed")
		st.Close()
		return
	}
	addr := net.JoinHostPort(a.cfg.LocalAddr, strconv.Itoa(int(req.Port)))
	local, err := a.dialLocal(ctx, addr, req.Port)
	if err != nil {
		if ctx.Err() != nil { // shutting down: the session goes too
			st.Close()
			return
		}
		status, msg := dialFailure(err, req.Port)
		log.Debug("local dial failed", "addr", addr, "err", err)
		a.reply(st, status, msg)
		st.Close()
		return
	}
	if err := a.reply(st, tunnel.StatusOK, ""); err != nil {
		log.Debug("stream reply failed", "err", err)
		local.Close()
		st.Close()
		return
	}
	log.Debug("stream open", "addr", addr)
	if t := a.cfg.LocalIdleTimeout; t > 0 {
		ic := newIdleConn(local, t)
		defer ic.stop()
		local = ic
	}
	toLocal, fromLocal, err := tunnel.Join(ctx, st, local)
	log.Debug("stream closed", "bytes_to_device", toLocal, "bytes_from_device", fromLocal, "err", err)
}

// guardStream wraps a stream of the agent's session so that its Write does
// not return while smux may still read the caller's buffer. When the
// session closes, smux answers a pending Write at once (io.ErrClosedPipe)
// while its sender may still be copying that frame into the connection;
// Join then gave its buffer back to the pool, and the next Join filled it
// under the sender (a data race; the reflector's end, tunnel/smuxsession,
// writes from the caller's goroutine and cannot). conn is the session's connection: when it has a
// Done (tunnel.NewWSConn), closed once no write reads a buffer any more, a
// Write failing on a closed session waits for it, a second at most.
func guardStream(st *smux.Stream, sess *smux.Session, conn net.Conn) net.Conn {
	d, ok := conn.(interface{ Done() <-chan struct{} })
	if !ok {
		return st
	}
	return &sessionStream{Stream: st, sess: sess, sent: d.Done()}
}

type sessionStream struct {
	*smux.Stream
	sess *smux.Session
	sent <-chan struct{}
}

func (s *sessionStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	if err != nil && s.sess.IsClosed() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-s.sent:
		case <-t.C:
		}
	}
	return n, err
}

// dialLocal connects to the device port, within LocalTimeout.
func (a *Agent) dialLocal(ctx context.Context, addr string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.LocalTimeout)
	defer cancel()
	if a.opts.DialLocal != nil {
		return a.opts.DialLocal(ctx, port)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// reply writes the open reply under a write deadline, so a reflector that
// stopped reading cannot hold the stream's goroutine.
func (a *Agent) reply(st net.Conn, status tunnel.Status, msg string) error {
	st.SetWriteDeadline(time.Now().Add(headerTimeout))
	err := tunnel.WriteReply(st, status, msg)
	st.SetWriteDeadline(time.Time{})
	return err
}

// dialFailure maps a local dial error to the reply status and a one-line
// message for the user: the cause only, never the agent's addresses.
func dialFailure(err error, port uint16) (tunnel.Status, string) {
	var ne net.Error
	var dnsErr *net.DNSError
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return tunnel.StatusRefused, fmt.Sprintf("nothing listening on port %d", port)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return tunnel.StatusTimeout, fmt.Sprintf("local connection to port %d timed out", port)
	case errors.As(err, &dnsErr):
		return tunnel.StatusOther, "cannot resolve the device's local address"
	case errors.As(err, &errno):
		return tunnel.StatusOther, errno.Error()
	}
	return tunnel.StatusOther, "local connection failed"
}

// idleConn closes a local connection through which no byte moved, in either
// direction, for its timeout (Config.LocalIdleTimeout, WebTunnelAgent's
// webtunnel.localTimeout). Closing it ends the splice and the stream.
type idleConn struct {
	net.Conn
	timeout time.Duration
	last    atomic.Int64 // time.Now().UnixNano() of the last byte moved

	mu      sync.Mutex // guards timer and stopped against the callback
	timer   *time.Timer
	stopped bool
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	ic := &idleConn{Conn: c, timeout: timeout}
	ic.last.Store(time.Now().UnixNano())
	ic.mu.Lock()
	ic.timer = time.AfterFunc(timeout, ic.check)
	ic.mu.Unlock()
	return ic
}

// check closes the connection when it has been idle for the timeout, and
// otherwise re-arms the timer for the rest of it.
func (c *idleConn) check() {
	idle := time.Duration(time.Now().UnixNano() - c.last.Load())
	if idle >= c.timeout {
		c.Conn.Close()
		return
	}
	c.mu.Lock()
	if !c.stopped {
		c.timer.Reset(c.timeout - idle)
	}
	c.mu.Unlock()
}

func (c *idleConn) stop() {
	c.mu.Lock()
	c.stopped = true
	c.timer.Stop()
	c.mu.Unlock()
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// CloseWrite keeps half-close working through the wrapper.
func (c *idleConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
