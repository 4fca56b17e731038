package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/elazarl/goproxy"

	"github.com/reflector-dev/reflector/tunnel"
)

// newAbsolute builds the goproxy server for absolute-form requests. goproxy
// forwards the request and streams the response (flushing event streams and
// chunked bodies); our hooks authorise each request before it is sent and
// turn a failed dial into the right status, which goproxy alone would answer
// 500. Its Transport is the proxy's, which dials device streams only and
// keeps idle streams per device port for keep-alive reuse.
func (p *Proxy) newAbsolute() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = discardPrintf{}
	gp.KeepAcceptEncoding = true // pass compressed bodies through untouched
	gp.ConnectDial = nil         // CONNECT never reaches goproxy (connect.go)
	gp.Tr = p.transport
	gp.OnRequest().DoFunc(p.filterAbsolute)
	gp.OnResponse().DoFunc(p.filterAbsoluteError)
	return gp
}

// exchangeKey carries ServeAbsolute's exchange to filterAbsolute, through
// the request's context.
type exchangeKey struct{}

// ServeAbsolute runs one absolute-form request (GET http://device/...)
// through goproxy, and once it has ended — response copied, or connection
// hijacked for a WebSocket and closed — writes its audit event.
func (p *Proxy) ServeAbsolute(w http.ResponseWriter, r *http.Request) {
	if upgradeRequested(r) {
		p.serveAbsoluteUpgrade(w, r)
		return
	}
	x, r := newExchange(w, r)
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	p.absolute.ServeHTTP(x.w, r)
	p.end(x, r)
}

// serveAbsoluteUpgrade forwards an absolute-form protocol upgrade (a
// WebSocket: GET http://device/ws with Upgrade) with the reverse proxy that
// serves device hosts. goproxy's own upgrade path copies until one side
// closes and ignores the request's context, so such a WebSocket outlived
// the revocation of its credential and the proxy's Close (issue 15).
func (p *Proxy) serveAbsoluteUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme != "http" {
		p.refuse(w, fmt.Errorf("%w: only http:// requests are forwarded; use CONNECT for %s", ErrBadTarget, r.URL.Scheme))
		return
	}
	a, err := p.authorize(r.Context(), r, r.URL.Host)
	if err != nil {
		p.refuse(w, err)
		return
	}
	p.reverse(w, r, a, p.webServer(a.device), ViaAbsolute)
}

// upgradeRequested reports whether r asks to switch protocols, as a
// WebSocket handshake does: an Upgrade header and "upgrade" among the
// Connection tokens.
func upgradeRequested(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for token := range strings.SplitSeq(v, ",") {
			if equalFoldASCII(textproto.TrimString(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

// filterAbsolute authenticates and authorises an absolute-form request,
// rewrites its header for the device (outboundHeader, as on device hosts)
// and points its URL at "device:port", which the Transport's dialer
// resolves and by which it pools streams. The Host header stays as the
// client sent it.
func (p *Proxy) filterAbsolute(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if r.URL.Scheme != "http" {
		return r, p.response(r, fmt.Errorf("%w: only http:// requests are forwarded; use CONNECT for %s", ErrBadTarget, r.URL.Scheme))
	}
	a, err := p.authorize(r.Context(), r, r.URL.Host)
	if err != nil {
		return r, p.response(r, err)
	}
	// Before the URL turns to the device: the client asked for r.Host
	// over http://.
	outboundHeader(r.Header, r.Host, r.URL.Scheme, a.client)
	r.URL.Host = net.JoinHostPort(a.device.ID, strconv.Itoa(int(a.port)))
	if web := p.webServer(a.device); web.tls && web.port == a.port {
		// http://pump-17.<domain>/ reaches the device's web server in the
		// protocol it speaks, as subdomain browsing does.
		r.URL.Scheme = "https"
		r.URL.Host = net.JoinHostPort(a.device.ID+"."+p.cfg.Domain, strconv.Itoa(int(a.port)))
	}
	x := r.Context().Value(exchangeKey{}).(*exchange) // ServeAbsolute put it there
	fwd, err := p.begin(r.Context(), x, a, ViaAbsolute)
	if err != nil {
		return r, p.response(r, err)
	}
	return r.WithContext(fwd), nil
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

// response builds the refusal for err, as refuse does for CONNECT.
func (p *Proxy) response(r *http.Request, err error) *http.Response {
	status, msg := statusFor(err)
	resp := goproxy.NewResponse(r, "text/plain; charset=utf-8", status, msg+"\n")
	if status == http.StatusProxyAuthRequired {
		resp.Header.Set("Proxy-Authenticate", `Basic realm="reflector"`)
	}
	tunnel.RetryLater(resp.Header, err) // sets Retry-After for a 429
	return resp
}

// discardPrintf silences goproxy's own logger: our hooks log what matters,
// with slog attributes, and nothing per request at info level.
type discardPrintf struct{}

func (discardPrintf) Printf(string, ...any) {}
