package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/reflector-dev/reflector/store"
)

// Config configures a Proxy. Zero values of the optional fields mean the
// documented default.
type Config struct {
	// Domain devices live under: device "pump-17" is pump-17.<Domain>.
	// Default "localhost".
	Domain string
	// Authenticate checks a proxy credential sent from client: a user name
	// and a password or token (Basic), or a bearer token alone (user "").
	// Errors wrapping store.ErrBadCredentials answer 407, a
	// tunnel.Throttled error 429 with Retry-After. Required.
	Authenticate func(client netip.Addr, user, secret string) (store.Credential, error)
	// Recheck reports whether an open stream's credential may still reach
	// the device, after an admin change (Revalidate). Nil keeps every stream.
	Recheck func(cred store.Credential, device string) bool
	// ClientAddr is the client's address for throttling and the audit log
	// (auth.ClientResolver.Addr). Nil means the socket's.
	ClientAddr func(r *http.Request) netip.Addr
	// Audit, if set, receives a stream event when a CONNECT stream closes
	// and a request event when an absolute-form request ends.
	Audit func(store.AuditEvent)
	// Device returns a device's record; store.ErrNotFound answers 404.
	// Required.
	Device func(ctx context.Context, id string) (store.Device, error)
	// Dial opens a stream to a device port (tunnel.Hub.Dial). Required.
	Dial func(ctx context.Context, device string, port uint16) (net.Conn, error)
	// DeviceProperties returns the properties a connected device's agent
	// declared (httpPort); nil when offline. Optional.
	DeviceProperties func(device string) map[string]string
	// DeviceAuth authenticates a request to a device subdomain
	// (<device>.<Domain> in the Host header, not a proxy request): it
	// returns the credential, or answers the request itself and returns
	// false (admin.Admin.DeviceAuth). Nil turns subdomain browsing off:
	// such requests go to Next.
	DeviceAuth func(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool)
	// DeviceCAs verifies the certificates of device web servers that speak
	// HTTPS (--device-ca). Nil accepts any certificate: devices mostly
	// serve self-signed ones, and the bytes cross the internet inside the
	// tunnel's own TLS either way.
	DeviceCAs *x509.CertPool
	// Next serves requests that are not proxy requests (admin UI, tunnel
	// endpoint). Nil answers them 404.
	Next http.Handler
	// OpenTimeout bounds a stream open, agent's answer included. Default 15 s.
	OpenTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate checks required fields and fills defaults.
func (c *Config) Validate() error {
	if c.Authenticate == nil || c.Device == nil || c.Dial == nil {
		return errors.New("proxy config: Authenticate, Device and Dial are required")
	}
	// Host names compare in lower case, without the root's dot.
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ClientAddr == nil {
		c.ClientAddr = socketAddr
	}
	if c.Audit == nil {
		c.Audit = func(store.AuditEvent) {}
	}
	return nil
}

// Proxy is the HTTP front. It is an http.Handler and never listens itself.
type Proxy struct {
	cfg       Config
	transport *http.Transport // device streams, pooled; shared by absolute and subdomain
	absolute  *goproxy.ProxyHttpServer
	subdomain *httputil.ReverseProxy
	reqID     atomic.Uint64

	// Spliced connections, tracked so Close can end them and wait.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessions sessions // open streams and requests, for Revalidate
}

// New returns a Proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.transport = p.newTransport()
	p.absolute = p.newAbsolute()
	p.subdomain = p.newSubdomain()
	return p, nil
}

// Close ends every spliced connection and forwarded request (WebSockets
// included) and waits for their goroutines.
func (p *Proxy) Close() error {
	p.cancel()
	p.wg.Wait()
	p.transport.CloseIdleConnections()
	return nil
}

// IsProxyRequest reports whether r is for the proxy rather than for a server
// of the reflector itself: a CONNECT, or a request in absolute form.
func IsProxyRequest(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.URL.IsAbs()
}

// ServeHTTP dispatches by request form and Host: CONNECT and absolute-form
// requests are proxied, a request for <device>.<Domain> is forwarded to the
// device's web server (subdomain.go), anything else goes to Config.Next.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.serveConnect(w, r)
		return
	}
	if r.URL.IsAbs() {
		p.serveAbsolute(w, r)
		return
	}
	if id, ok := p.subdomainDevice(r); ok {
		p.serveSubdomain(w, r, id)
		return
	}
	if p.cfg.Next != nil {
		p.cfg.Next.ServeHTTP(w, r)
		return
	}
	http.Error(w, "not found: this address serves only proxy requests", http.StatusNotFound)
}

// access is the outcome of authenticating and authorising one request.
type access struct {
	cred   store.Credential
	client netip.Addr
	device store.Device
	port   uint16
}

// authorize runs the checks every proxy request passes, in order:
// authenticate, resolve the target, look the device up, check access and
// the device's own port list. hostport is the request's target; a missing
// port means the device's HTTP port. The returned error maps to the user's
// status with statusFor, or is errNeedAuth.
func (p *Proxy) authorize(ctx context.Context, r *http.Request, hostport string) (access, error) {
	client := p.cfg.ClientAddr(r)
	cred, err := p.authenticate(r.Header.Get("Proxy-Authorization"), client)
	if err != nil {
		return access{}, err
	}
	t, err := resolveHost(hostport, p.cfg.Domain)
	if err != nil {
		return access{}, err
	}
	d, err := p.allowedDevice(ctx, cred, t.device)
	if err != nil {
		return access{}, err
	}
	port := t.port
	if port == 0 {
		port = p.webServer(d).port
	}
	if err := checkPort(d, port); err != nil {
		return access{}, err
	}
	return access{cred: cred, client: client, device: d, port: port}, nil
}

// allowedDevice looks the device up and checks that cred may reach it.
func (p *Proxy) allowedDevice(ctx context.Context, cred store.Credential, id string) (store.Device, error) {
	d, err := p.cfg.Device(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Device{}, fmt.Errorf("%w %s", ErrUnknownDevice, id)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("%w: look up device %s: %w", errInternal, id, err)
	}
	if !cred.Allows(d) {
		return store.Device{}, fmt.Errorf("%w %s", ErrNoAccess, id)
	}
	return d, nil
}

// checkPort applies the device record's own port list, if it has one.
func checkPort(d store.Device, port uint16) error {
	if len(d.Ports) > 0 && !slices.Contains(d.Ports, port) {
		return fmt.Errorf("%w: device %s port %d", ErrPortNotListed, d.ID, port)
	}
	return nil
}

// webServer is where a device's web server listens.
type webServer struct {
	port uint16
	tls  bool
	// local is the device-local host the agent forwards to, when its
	// agent declares one (targetHost); "" otherwise.
	local string
}

// webServer finds the device's web server: the port from the reflector's
// record, else what the agent declared (httpPort), else 80. Whether it
// speaks TLS goes with the port: the record's HTTPTLS for the record's
// port; for the agent's port, the agent's httpsEnable, which the record's
// HTTPTLS can only turn on.
func (p *Proxy) webServer(d store.Device) webServer {
	var props map[string]string
	if p.cfg.DeviceProperties != nil {
		props = p.cfg.DeviceProperties(d.ID)
	}
	ws := webServer{port: d.HTTPPort, tls: d.HTTPTLS, local: strings.ToLower(props["targetHost"])}
	if ws.port != 0 {
		return ws
	}
	ws.port = 80
	if n, err := strconv.ParseUint(props["httpPort"], 10, 16); err == nil && n != 0 {
		ws.port = uint16(n)
	}
	ws.tls = ws.tls || props["httpsEnable"] == "true"
	return ws
}

// ProxyOnly returns a handler for a listener that serves the proxy alone
// (--proxy-listen): requests that are not proxy requests get 404.
func (p *Proxy) ProxyOnly() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsProxyRequest(r) {
			http.Error(w, "not found: this address serves only proxy requests", http.StatusNotFound)
			return
		}
		p.ServeHTTP(w, r)
	})
}
