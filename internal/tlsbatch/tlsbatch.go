// Package tlsbatch cuts the system calls of bulk data over crypto/tls.
//
// crypto/tls writes each record (at most 16 KiB of data) to the connection
// under it as soon as it is sealed, so a 64 KiB write costs four system
// calls and four TCP sends. A Conn sits under the *tls.Conn instead of the
// socket; between Hold and Send (or through Writer) the records are gathered
// in a pooled buffer and sent with one write. Outside a batch it writes
// through, so handshakes, alerts and callers that do not batch behave as
// before.
//
// Reading, crypto/tls returns one record a Read; Reader fills the caller's
// buffer with the further records the *tls.Conn holds or its socket has
// received, without waiting for the network.
package tlsbatch

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// maxBatch is the most a batch holds before it is sent early: one 64 KiB
// payload with the headers and tags of its records, also while crypto/tls
// still sends the small records it starts a connection with (about 1 KiB
// each, for the first 128 KiB).
const maxBatch = 68 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, maxBatch)
	return &b
}}

// Conn is the socket under a *tls.Conn.
type Conn struct {
	net.Conn
	raw    syscall.RawConn // the socket's, for reads that must not wait; nil if none
	noWait atomic.Bool     // reads return errWouldBlock rather than wait

	mu    sync.Mutex // orders writes to the socket
	depth int        // open batches
	buf   *[]byte    // records held by the open batches; nil when none
	err   error      // the first failed socket write of a batch
}

// New returns c ready to go under tls.Server or tls.Client.
func New(c net.Conn) *Conn {
	return &Conn{Conn: c, raw: rawConn(c)}
}

// wouldBlock is the error of a read that found nothing to read and was not
// to wait. It is temporary, so crypto/tls does not give up the connection.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsbatch: nothing to read now" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// Read reads from the socket; while noWait is set it takes only what the
// socket holds and returns errWouldBlock when that is nothing.
func (c *Conn) Read(p []byte) (int, error) {
	if c.raw == nil || !c.noWait.Load() {
		return c.Conn.Read(p)
	}
	var (
		n   int
		err error
	)
	if cerr := c.raw.Read(func(fd uintptr) bool {
		n, err = readNow(fd, p)
		return true // done, whether or not there was data
	}); cerr != nil {
		return 0, cerr
	}
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return 0, errWouldBlock
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write sends p, or holds it while a batch is open. A held write reports
// success; if sending it fails later, the batch reports the error, and so
// does every later Write.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.depth == 0 {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = bufPool.Get().(*[]byte)
	}
	if len(*c.buf)+len(p) > maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxBatch {
			return c.Conn.Write(p)
		}
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// Hold starts a batch: the socket writes that follow are held until the
// matching Send. Batches may overlap (several writers on one connection):
// what they hold is sent when the last one ends, in the order it was
// written.
//
// Hold and Send do nothing on a nil Conn, so a caller that may or may not
// have one (Of returns nil for other connections) need not check.
func (c *Conn) Hold() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.depth++
	c.mu.Unlock()
}

// Send ends a batch begun by Hold and, if it was the last one open, sends
// what is held in one socket write. It returns the socket's error.
func (c *Conn) Send() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.depth--
	if c.depth > 0 || c.buf == nil {
		return c.err
	}
	err := c.flushLocked()
	bufPool.Put(c.buf)
	c.buf = nil
	return err
}

// flushLocked sends what is held; the caller holds mu.
func (c *Conn) flushLocked() error {
	if len(*c.buf) == 0 {
		return c.err
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	if err != nil && c.err == nil {
		c.err = err
	}
	return c.err
}

// Of returns the Conn under c when c is a *tls.Conn over one, else nil.
func Of(c net.Conn) *Conn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	b, _ := tc.NetConn().(*Conn)
	return b
}

// Close closes c without waiting. A *tls.Conn over a Conn loses its socket
// first: otherwise its close alert would queue behind a batch that a peer
// who stopped reading holds up, for as long as the 5 s crypto/tls allows it.
// (crypto/tls itself skips the alert when a Write is in flight; a batch being
// sent is such a write.) Use it to tear a connection down, not to end it
// cleanly.
func Close(c net.Conn) error {
	if b := Of(c); b != nil {
		b.Conn.Close()
	}
	return c.Close()
}

// Listener wraps a listener's connections in New, then in tls.Server.
type Listener struct {
	net.Listener
	Config *tls.Config
}

// Accept returns the next connection as a *tls.Conn over a Conn.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(New(c), l.Config), nil
}

// Writer returns c with every Write sent as one batch when c is a *tls.Conn
// over a Conn, else c itself.
func Writer(c net.Conn) net.Conn {
	b := Of(c)
	if b == nil {
		return c
	}
	return batchWriter{c, b}
}

type batchWriter struct {
	net.Conn // the *tls.Conn
	b        *Conn
}

func (w batchWriter) Write(p []byte) (int, error) {
	w.b.Hold()
	n, err := w.Conn.Write(p)
	if serr := w.b.Send(); err == nil {
		err = serr
	}
	return n, err
}

// CloseWrite half-closes the *tls.Conn.
func (w batchWriter) CloseWrite() error {
	return w.Conn.(*tls.Conn).CloseWrite()
}

// Reader returns c with each Read filled, after its first record, with the
// records c already holds or its socket has received, without waiting for
// more, when c is a *tls.Conn over a Conn: crypto/tls returns one record
// (at most 16 KiB) a Read. Other connections are returned as they are.
func Reader(c net.Conn) net.Conn {
	b := Of(c)
	if b == nil || b.raw == nil {
		return c
	}
	return &gatherReader{c.(*tls.Conn), b}
}

type gatherReader struct {
	*tls.Conn
	b *Conn
}

func (r *gatherReader) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if err != nil || n == len(p) {
		return n, err
	}
	r.b.noWait.Store(true)
	for n < len(p) {
		var m int
		m, err = r.Conn.Read(p[n:])
		n += m
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				err = nil
			}
			break
		}
	}
	r.b.noWait.Store(false)
	return n, err
}

type contextKey struct{}

// ContextWithConn returns ctx carrying the Conn under c, when c is a
// *tls.Conn over one: http.Server's ConnContext, so that handlers can batch
// what they write (FromContext).
func ContextWithConn(ctx context.Context, c net.Conn) context.Context {
	if b := Of(c); b != nil {
		return context.WithValue(ctx, contextKey{}, b)
	}
	return ctx
}

// FromContext returns the Conn ContextWithConn put in ctx, or nil.
func FromContext(ctx context.Context) *Conn {
	b, _ := ctx.Value(contextKey{}).(*Conn)
	return b
}
