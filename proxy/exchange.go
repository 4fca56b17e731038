package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/reflector-dev/reflector/internal/tlsbatch"
	"github.com/reflector-dev/reflector/store"
)

// exchange is one forwarded HTTP request, absolute-form or on a device
// subdomain, from its arrival to its audit event: it counts the bytes each
// way and, once the request is authorised, holds the grant by which
// Streams lists it and Revalidate and CutStream can end it. Only the
// request's handler goroutine touches it, except for the atomic counters.
type exchange struct {
	w        *countingWriter
	body     *countingBody // nil without a request body
	upgraded *countingRWC  // the device side after a protocol switch (WebSocket), nil otherwise
	start    time.Time
	n        traffic // bytes of w, body and upgraded, which add to it

	access access
	grant  *grant // nil until begin: refused before any stream
	stop   func() bool
}

// newExchange starts counting w and r's body; the returned request is r
// with the counting body.
func newExchange(w http.ResponseWriter, r *http.Request) (*exchange, *http.Request) {
	x := &exchange{start: time.Now()}
	x.w = &countingWriter{ResponseWriter: w, batch: tlsbatch.FromContext(r.Context()), n: &x.n.down}
	if r.Body != nil && r.Body != http.NoBody {
		x.body = &countingBody{ReadCloser: r.Body, n: &x.n.up}
		r2 := *r // shallow copy, as WithContext makes
		r2.Body = x.body
		r = &r2
	}
	return x, r
}

// begin records the authorised access a by path via and registers a grant
// for it,
// unless its user has MaxUserStreams streams and requests at the device
// already (an error wrapping ErrTooManyStreams, 429): a request whose
// answer the client does not read holds a device stream as a CONNECT does.
// The returned context, derived from ctx, ends when Revalidate or
// CutStream ends the grant or the proxy closes; forward the request with it. It carries the
// client's address to the Transport's dialer (dialForHTTP).
func (p *Proxy) begin(ctx context.Context, x *exchange, a access, via string) (context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	g := newGrant(a, via, &x.n, cancel)
	if !p.grants.addWithin(g, MaxUserStreams) {
		cancel()
		return nil, fmt.Errorf("user %s, device %s: %w", a.cred.User.Name, a.device.ID, ErrTooManyStreams)
	}
	x.access, x.grant = a, g
	x.stop = context.AfterFunc(p.ctx, cancel) // Close: not a revocation
	return context.WithValue(ctx, dialClientKey{}, a.client), nil
}

// end unregisters the exchange's grant and writes its audit event; r is
// the request as the client sent it. An exchange refused before begin
// reached nothing and is not audited here.
func (p *Proxy) end(x *exchange, r *http.Request) {
	if x.grant == nil {
		return
	}
	p.grants.remove(x.grant)
	x.grant.cancel()
	x.stop()
	ev := x.access.event(store.AuditRequest)
	ev.OK = x.w.status != 0 && x.w.status < 500
	ev.BytesUp, ev.BytesDown, ev.Duration = x.n.up.Load(), x.n.down.Load(), time.Since(x.start)
	ev.Reason = fmt.Sprintf("%s %s %d", r.Method, truncatePath(r.URL.Path), x.w.status)
	if why := x.grant.closedReason(); why != "" {
		ev.Reason += " (" + why + ")"
	}
	p.cfg.Audit(ev)
}

// truncatePath shortens a request path for the audit log.
func truncatePath(path string) string {
	const limit = 200
	if len(path) <= limit {
		return path
	}
	return path[:limit] + "…"
}

// countingWriter counts the body bytes of a response and passes Flush and
// Hijack through, which goproxy and ReverseProxy need for event streams and
// WebSocket.
type countingWriter struct {
	http.ResponseWriter
	status int           // the final status; informational (1xx) ones are not kept
	n      *atomic.Int64 // body bytes written; Streams reads it as they pass
	// batch, when the client's connection is TLS over a tlsbatch.Conn,
	// sends the records of each Write and Flush in one socket write; nil
	// otherwise (Hold and Send then do nothing).
	batch *tlsbatch.Conn
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.batch.Hold()
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	if serr := w.batch.Send(); err == nil {
		err = serr
	}
	return n, err
}

// FlushError flushes the response. ReverseProxy calls it after every
// write of a streamed response, so it looks for the flusher directly
// rather than through a new http.ResponseController each time.
func (w *countingWriter) FlushError() error {
	w.batch.Hold()
	err := w.flush()
	if serr := w.batch.Send(); err == nil {
		err = serr
	}
	return err
}

func (w *countingWriter) flush() error {
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *countingWriter) Flush() { w.FlushError() }

func (w *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes read from a request body into n. The
// Transport reads it on its own goroutine, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countingRWC counts the bytes each way through the device side of a
// switched protocol (a WebSocket after its 101) into its exchange's
// traffic. Two copiers use it at once, hence the atomics.
type countingRWC struct {
	io.ReadWriteCloser
	n *traffic
}

func (c *countingRWC) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	c.n.down.Add(int64(n))
	return n, err
}

// Write counts p before writing it: the device may answer, and the exchange
// end and be audited, before the Write returns to this goroutine. A short
// write takes back what did not go.
func (c *countingRWC) Write(p []byte) (int, error) {
	c.n.up.Add(int64(len(p)))
	n, err := c.ReadWriteCloser.Write(p)
	if n < len(p) {
		c.n.up.Add(int64(n - len(p)))
	}
	return n, err
}
