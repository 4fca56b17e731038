package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/tunnel"
)

// Subdomain browsing: https://pump-17.<domain>/ in a browser is the web UI of
// device pump-17. Config.DeviceAuth decides who the request comes from (a
// device session cookie, or X-Reflector-Authorization for programs); the
// request is then authorised like any proxy request and forwarded by
// httputil.ReverseProxy to the device's web server through the tunnel, with
// the Host header as the browser sent it. Responses stream (event streams
// and long downloads arrive as the device sends them), WebSocket upgrades
// pass through, and redirects to the device's own local address come back
// as its subdomain.

// headerReflectorAuth carries a program's bearer token on a device
// subdomain. DeviceAuth removes it; the Rewrite hook drops it again so that
// no mistake there can hand a token to a device.
const headerReflectorAuth = "X-Reflector-Authorization"

// subdomainRequest is what ServeDevice decided for one request, handed
// to the ReverseProxy hooks through the request's context.
type subdomainRequest struct {
	x      *exchange
	scheme string // "http" or "https" to the device
	addr   string // the Transport's dial address and pool key (newTransport)
	host   string // the device's name, <id>.<Domain>
	local  string // the device-local host the agent declared, "" if none
}

type subdomainKey struct{}

func subdomainFrom(ctx context.Context) *subdomainRequest {
	sr, _ := ctx.Value(subdomainKey{}).(*subdomainRequest)
	return sr
}

// newSubdomain builds the reverse proxy for device subdomains.
func (p *Proxy) newSubdomain() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        p.rewriteSubdomain,
		Transport:      p.transport,
		FlushInterval:  -1, // every write goes out at once: event streams, long polls, slow bodies of known length
		BufferPool:     &copyBuffers,
		ModifyResponse: p.modifySubdomainResponse,
		ErrorHandler:   p.subdomainError,
		ErrorLog:       slog.NewLogLogger(p.cfg.Logger.Handler(), slog.LevelDebug),
	}
}

// ServeDevice forwards a request for device id's host (subdomain), in order:
// authenticate (DeviceAuth, which answers failures itself), look up the
// device and check access, find its web server and check the port against
// the record's list, then forward, tracked for Revalidate and audited when
// it ends.
func (p *Proxy) ServeDevice(w http.ResponseWriter, r *http.Request, id string) {
	cred, ok := p.cfg.DeviceAuth(w, r, id)
	if !ok {
		return
	}
	client := tunnel.ClientAddr(r)
	d, err := p.allowedDevice(r.Context(), cred, id)
	var web webServer
	if err == nil {
		web = p.webServer(d)
		err = checkPort(d, web.port)
	}
	if err != nil {
		status, msg := statusFor(err)
		if status == http.StatusInternalServerError {
			p.cfg.Logger.Error("device subdomain", "device", id, "user", cred.User.Name, "err", err)
		}
		httpError(w, err, status, msg)
		return
	}

	p.reverse(w, r, access{cred: cred, client: client, device: d, port: web.port}, web, ViaSubdomain)
}

// reverse forwards an authorised request to port a.port of a's device with
// the reverse proxy — a device host's requests, and absolute-form protocol
// upgrades — tracked as a grant for Revalidate and audited when it ends.
// web is the device's web server: the port speaks TLS if it is web's and
// web says so; via names the path for Streams.
func (p *Proxy) reverse(w http.ResponseWriter, r *http.Request, a access, web webServer, via string) {
	// A WebSocket may last long after the server's Shutdown, which does
	// not wait for hijacked connections; Close does.
	if p.enter() {
		defer p.wg.Done()
	}
	x, r := newExchange(w, r)
	defer p.end(x, r) // deferred: ReverseProxy aborts a broken body with panic(http.ErrAbortHandler)
	ctx, err := p.begin(r.Context(), x, a, via)
	if err != nil {
		status, msg := statusFor(err)
		httpError(w, err, status, msg)
		return
	}
	port := strconv.Itoa(int(a.port))
	sr := &subdomainRequest{x: x, scheme: "http", addr: net.JoinHostPort(a.device.ID, port),
		host: a.device.ID + "." + p.cfg.Domain, local: web.local}
	if web.tls && web.port == a.port {
		sr.scheme, sr.addr = "https", net.JoinHostPort(sr.host, port)
	}
	p.subdomain.ServeHTTP(x.w, r.WithContext(context.WithValue(ctx, subdomainKey{}, sr)))
}

// rewriteSubdomain points the outbound request at the device and sets its
// headers as for every forwarded request (outboundHeader). ReverseProxy has
// already dropped hop-by-hop headers (Proxy-Authorization among them) and
// the standard forwarding headers.
func (p *Proxy) rewriteSubdomain(pr *httputil.ProxyRequest) {
	sr := subdomainFrom(pr.In.Context())
	pr.Out.URL.Scheme = sr.scheme
	pr.Out.URL.Host = sr.addr
	// pr.Out.Host stays the browser's: the device sees pump-17.<domain>.
	proto := "https" // device hosts are served on the TLS listener only
	if pr.In.URL.IsAbs() {
		proto = pr.In.URL.Scheme // an absolute-form upgrade (reverse): what the client asked for
	}
	outboundHeader(pr.Out.Header, pr.In.Host, proto, sr.x.access.client)
}

// reflectorCookiePrefix starts the names of the reflector's own cookies
// (admin.SessionCookie, DeviceCookie, StateCookie), lower-cased: browsers
// match the __Host- prefix in any case.
const reflectorCookiePrefix = "__host-reflector_"

// modifySubdomainResponse keeps what a device sends to its own host (its
// cookies, a redirect, a switched protocol): a redirect to the device's own
// local address comes back as its subdomain, cookies are confined to the
// device's host (deviceSetCookie), Clear-Site-Data is dropped (browsers
// apply it to the whole site: every device and the admin host), and the
// bytes of a switched protocol are counted.
func (p *Proxy) modifySubdomainResponse(resp *http.Response) error {
	sr := subdomainFrom(resp.Request.Context())
	if cookies := resp.Header["Set-Cookie"]; len(cookies) > 0 {
		kept := cookies[:0]
		for _, line := range cookies {
			if c, ok := deviceSetCookie(line); ok {
				kept = append(kept, c)
			}
		}
		resp.Header["Set-Cookie"] = kept
		if len(kept) == 0 {
			delete(resp.Header, "Set-Cookie")
		}
	}
	resp.Header.Del("Clear-Site-Data")
	if loc := resp.Header.Get("Location"); loc != "" {
		_, port, _ := net.SplitHostPort(resp.Request.Host)
		if u, ok := deviceLocation(loc, sr.host, port, sr.local); ok {
			resp.Header.Set("Location", u)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy writes the 101 to the hijacked connection, not
		// through the ResponseWriter.
		sr.x.w.status = http.StatusSwitchingProtocols
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			sr.x.upgraded = &countingRWC{ReadWriteCloser: rwc, n: &sr.x.n}
			resp.Body = sr.x.upgraded
		}
	}
	return nil
}

// deviceSetCookie returns a device's Set-Cookie line as it may reach the
// browser, or false to drop it. Device hosts share a site with each other
// and with the admin host, so a device must not set a cookie for the other
// hosts: a Domain attribute is removed and the cookie is host-only. Cookies
// named like the reflector's own are dropped (a device page must not plant
// a session or a hand-off state on its host), and so are nameless cookies
// whose value starts with __Host- or __Secure-, which browsers send as
// "value" alone and a server may read as a cookie of that name.
func deviceSetCookie(line string) (string, bool) {
	pair, attrs, _ := strings.Cut(line, ";")
	name, value, named := strings.Cut(pair, "=")
	if !named { // "Set-Cookie: x" sets a nameless cookie of value x
		name, value = "", name
	}
	name = strings.ToLower(strings.TrimSpace(name))
	value = strings.ToLower(strings.TrimSpace(value))
	switch {
	case strings.HasPrefix(name, reflectorCookiePrefix):
		return "", false
	case name == "" && (strings.HasPrefix(value, "__host-") || strings.HasPrefix(value, "__secure-")):
		return "", false
	}
	if attrs == "" {
		return line, true
	}
	out := pair
	for attr := range strings.SplitSeq(attrs, ";") {
		key, _, _ := strings.Cut(attr, "=")
		if equalFoldASCII(strings.TrimSpace(key), "domain") {
			continue
		}
		out += ";" + attr
	}
	return out, true
}

// deviceLocation rewrites a Location value that points at the device's own
// local address — localhost, a loopback or unspecified IP, the
// device-local host its agent declared, with any port — or at its subdomain
// with http://, to https://<host>[:port]/same-path, host being the device's
// subdomain and port the one the browser used ("" for none). It reports
// false for a Location to leave alone: relative ones, and other hosts.
func deviceLocation(loc, host, port, local string) (string, bool) {
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" {
		return "", false
	}
	switch u.Scheme {
	case "", "http", "https":
	default:
		return "", false
	}
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	own := h == host && u.Scheme == "http"
	if !own && !isLocalHost(h, local) {
		return "", false
	}
	u.Scheme, u.User, u.Host = "https", nil, host
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	return u.String(), true
}

// isLocalHost reports whether h, lower case, is an address a device's web
// server uses for itself.
func isLocalHost(h, local string) bool {
	if h == "localhost" || (local != "" && h == local) {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsUnspecified()
}

// subdomainError answers a request whose round trip to the device failed,
// with the status of its cause and a one-line reason.
func (p *Proxy) subdomainError(w http.ResponseWriter, r *http.Request, err error) {
	sr := subdomainFrom(r.Context())
	status, msg := forwardStatus(err, sr.x.access.device.ID, sr.x.access.port)
	if r.Context().Err() == nil { // not the client leaving, nor a revocation
		p.cfg.Logger.Info("device subdomain: forward failed", "device", sr.x.access.device.ID,
			"port", sr.x.access.port, "user", sr.x.access.cred.User.Name, "client", sr.x.access.client, "err", err)
	}
	httpError(w, err, status, msg)
}

// forwardStatus is statusFor for a failed round trip to a device's web
// server, which can also fail in TLS or by answering too slowly.
func forwardStatus(err error, device string, port uint16) (int, string) {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &verify):
		return http.StatusBadGateway, fmt.Sprintf("device %s port %d: its TLS certificate is not trusted", device, port)
	case errors.As(err, &record):
		return http.StatusBadGateway, fmt.Sprintf("device %s port %d does not speak TLS", device, port)
	case errors.Is(err, tunnel.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, fmt.Sprintf("device %s port %d did not answer in time", device, port)
	}
	return statusFor(err)
}
