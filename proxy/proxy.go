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
	"github.com/reflector-dev/reflector/tunnel"
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
	// tunnel.Throttled error 429 with Retry-After. ctx bounds how long a
	// password check may wait for the CPU. Required.
	Authenticate func(ctx context.Context, client netip.Addr, user, secret string) (store.Credential, error)
	// Recheck reports whether an open stream's credential may still reach
	// the device, after an admin change (Revalidate). Nil keeps every stream.
	Recheck func(cred store.Credential, device string) bool
	// Audit, if set, receives a stream event when a CONNECT stream closes
	// and a request event when an absolute-form request ends.
	Audit func(store.AuditEvent)
	// Device returns a device's record; store.ErrNotFound answers 404.
	// Required.
	Device func(ctx context.Context, id string) (store.Device, error)
	// Dial opens a stream to a device port for a user at client
	// (tunnel.Hub.Dial). Required.
	Dial func(ctx context.Context, device string, port uint16, client netip.Addr) (net.Conn, error)
	// DeviceProperties returns the properties a connected device's agent
	// declared (httpPort); nil when offline. Optional.
	DeviceProperties func(device string) map[string]string
	// DeviceAuth authenticates a request to a device subdomain
	// (<device>.<Domain> in the Host header, not a proxy request): it
	// returns the credential, or answers the request itself and returns
	// false (admin.Admin.DeviceAuth). Required.
	DeviceAuth func(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool)
	// DeviceCAs verifies the certificates of device web servers that speak
	// HTTPS (--device-ca). Nil accepts any certificate: devices mostly
	// serve self-signed ones, and the bytes cross the internet inside the
	// tunnel's own TLS either way.
	DeviceCAs *x509.CertPool
	// OpenTimeout bounds a stream open, agent's answer included. Default 15 s.
	OpenTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate checks required fields and fills defaults.
func (c *Config) Validate() error {
	if c.Authenticate == nil || c.Device == nil || c.Dial == nil || c.DeviceAuth == nil {
		return errors.New("proxy config: Authenticate, Device, Dial and DeviceAuth are required")
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
	mu     sync.Mutex // orders wg.Add with Close's Wait
	closed bool

	grants grants // open streams and requests, for Revalidate
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
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.transport.CloseIdleConnections()
	return nil
}

// enter counts a stream or request that Close must wait for, and reports
// whether it did: not once Close has begun, when p.ctx has ended and the
// caller's work ends at once anyway. A WaitGroup must not grow while its
// Wait may be running from zero.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// The server's router (internal/server/router.go) decides which of the
// proxy's handlers serves a request: ServeConnect (connect.go),
// ServeAbsolute (absolute.go), ServeDevice for a device host
// (subdomain.go), ServeClientTool for a macchina.io client tool's
// upgrade on a device host (client_tool.go) and ServeWebsockify for
// noVNC's bridge there (websockify.go). Each authenticates, resolves
// and authorises before it dials anything.

// DeviceHost returns the device a Host header names: <id>.<Domain>, with
// any port. The admin host (Domain itself), IP addresses, bare ids and
// other names are not device hosts.
func (p *Proxy) DeviceHost(hostport string) (string, bool) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = hostName(host)
	id, ok := strings.CutSuffix(host, "."+p.cfg.Domain)
	if !ok || !tunnel.ValidDeviceID(id) || net.ParseIP(host) != nil {
		return "", false
	}
	return id, true
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
	client := tunnel.ClientAddr(r)
	cred, err := p.authenticate(ctx, r.Header.Get("Proxy-Authorization"), client)
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
