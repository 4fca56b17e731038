package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/throttle"
	"github.com/reflector-dev/reflector/tunnel"
)

// newAbsolute builds the goproxy server for absolute-form requests. goproxy
// forwards the request and streams the response (flushing event streams and
// chunked bodies); our hooks authorise each request before it is sent and
// turn a failed dial into the right status, which goproxy alone would answer
// 500. Its Transport dials device streams only, and keeps idle streams per
// device port for keep-alive reuse.
func (p *Proxy) newAbsolute() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = discardPrintf{}
	gp.KeepAcceptEncoding = true // pass compressed bodies through untouched
	gp.ConnectDial = nil         // CONNECT never reaches goproxy (connect.go)
	gp.Tr = &http.Transport{
		DialContext:           p.dialForHTTP,
		Proxy:                 nil, // never a further proxy: only device streams
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	gp.OnRequest().DoFunc(p.filterAbsolute)
	gp.OnResponse().DoFunc(p.filterAbsoluteError)
	return gp
}

// absoluteState carries what filterAbsolute decided back to serveAbsolute,
// through the request's context.
type absoluteState struct {
	access  access
	session *session
}

type absoluteStateKey struct{}

// serveAbsolute runs one absolute-form request through goproxy, and once it
// has ended — response copied, or connection hijacked for a WebSocket and
// closed — writes its audit event.
func (p *Proxy) serveAbsolute(w http.ResponseWriter, r *http.Request) {
	st := &absoluteState{}
	r = r.WithContext(context.WithValue(r.Context(), absoluteStateKey{}, st))
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	start := time.Now()
	p.absolute.ServeHTTP(cw, r)
	if st.session == nil {
		return // refused before any stream: nothing was reached
	}
	p.sessions.remove(st.session)
	revoked := false
	select {
	case <-st.session.done:
		revoked = true
	default:
	}
	st.session.cancel()
	ev := st.access.event(store.AuditRequest)
	ev.OK = cw.status != 0 && cw.status < 500
	ev.BytesDown, ev.Duration = cw.n, time.Since(start)
	if body != nil {
		ev.BytesUp = body.n.Load()
	}
	ev.Reason = fmt.Sprintf("%s %s %d", r.Method, truncatePath(r.URL.Path), cw.status)
	if revoked {
		ev.Reason += " (closed: access revoked)"
	}
	p.cfg.Audit(ev)
}

// filterAbsolute authenticates and authorises an absolute-form request and
// points its URL at "device:port", which the Transport's dialer resolves and
// by which it pools streams. The Host header stays as the client sent it.
func (p *Proxy) filterAbsolute(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if r.URL.Scheme != "http" {
		return r, p.response(r, fmt.Errorf("%w: only http:// requests are forwarded; use CONNECT for %s", ErrBadTarget, r.URL.Scheme))
	}
	a, err := p.authorize(r.Context(), r, r.URL.Host)
	if err != nil {
		return r, p.response(r, err)
	}
	r.URL.Host = net.JoinHostPort(a.device.ID, strconv.Itoa(int(a.port)))
	rctx := tunnel.WithClientAddr(r.Context(), a.client.String())
	st, ok := r.Context().Value(absoluteStateKey{}).(*absoluteState)
	if !ok { // not from serveAbsolute: nothing to track it with
		return r.WithContext(rctx), nil
	}
	rctx, cancel := context.WithCancel(rctx)
	done := make(chan struct{})
	var once sync.Once
	st.access = a
	st.session = &session{cred: a.cred, device: a.device.ID, done: done, cancel: func() {
		once.Do(func() { close(done) })
		cancel()
	}}
	p.sessions.add(st.session)
	return r.WithContext(rctx), nil
}

// truncatePath shortens a request path for the audit log.
func truncatePath(path string) string {
	const limit = 200
	if len(path) <= limit {
		return path
	}
	return path[:limit] + "…"
}

// filterAbsoluteError answers a failed round trip with the status of its
// cause (goproxy would say 500).
func (p *Proxy) filterAbsoluteError(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp != nil || ctx.Error == nil {
		return resp
	}
	p.cfg.Logger.Info("forward failed", "url", ctx.Req.URL.String(), "err", ctx.Error)
	return p.response(ctx.Req, ctx.Error)
}

// dialForHTTP opens a device stream for the Transport. addr is the
// "device:port" filterAbsolute set, already authorised.
func (p *Proxy) dialForHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrBadTarget)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrBadTarget)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpenTimeout)
	defer cancel()
	return p.cfg.Dial(ctx, host, uint16(port))
}

// response builds the refusal for err, as refuse does for CONNECT.
func (p *Proxy) response(r *http.Request, err error) *http.Response {
	status, msg := statusFor(err)
	resp := goproxy.NewResponse(r, "text/plain; charset=utf-8", status, msg+"\n")
	var locked *throttle.LockedOutError
	switch {
	case status == http.StatusProxyAuthRequired:
		resp.Header.Set("Proxy-Authenticate", `Basic realm="reflector"`)
	case errors.As(err, &locked):
		resp.Header.Set("Retry-After", throttle.RetryAfterSeconds(locked.RetryAfter))
	}
	return resp
}

// discardPrintf silences goproxy's own logger: our hooks log what matters,
// with slog attributes, and nothing per request at info level.
type discardPrintf struct{}

func (discardPrintf) Printf(string, ...any) {}
