// Package server assembles a reflector from its parts — store, hub, tunnel
// endpoint, proxy, control socket — on its listeners, and runs it until its
// context ends. cmd/reflector only parses flags into a Config; tests build
// the same server on 127.0.0.1:0.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/admin/brand"
	"github.com/reflector-dev/reflector/admin/web"
	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/internal/control"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/tlsbatch"
	"github.com/reflector-dev/reflector/internal/webssh"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

// Config configures a Server. Zero values mean the documented default.
type Config struct {
	Listen      string // TLS listener for everything; default ":8443"
	ProxyListen string // optional plain-HTTP proxy listener; "" for none
	// MetricsListen is an optional plain-HTTP listener for GET /metrics
	// (Prometheus text format; package metrics); "" for none. It has no
	// authentication: a loopback or private address.
	MetricsListen string
	Domain        string // default "localhost"
	// PublicPort is the port users, browsers and agents reach the TLS
	// listener at, when a port mapping or load balancer in front changes
	// it (443 outside, 8443 here): it goes into redirects, the PAC file and
	// printed agent and proxy lines. Default: the listener's own.
	PublicPort string
	DataDir    string // default "./reflector-data"
	TLSCert    string // PEM files; both empty: self-signed, kept in DataDir
	TLSKey     string
	Logger     *slog.Logger // nil discards

	// TrustedProxies are the CIDRs of reverse proxies whose
	// X-Forwarded-For names the client (--trusted-proxy); others are
	// ignored and the socket's address is the client's.
	TrustedProxies []string
	// WebTunnelDomain, if set, is the only "@domain" accepted in a
	// WebTunnelAgent's "deviceId@domain" user name (--webtunnel-domain);
	// empty accepts any.
	WebTunnelDomain string
	// BrandDir, if set, is a directory with the web pages' texts, stylesheet,
	// logo and favicon (package brand; --brand-dir).
	BrandDir string
	// DeviceCA is a PEM file of CAs that device web servers speaking HTTPS
	// are verified with; "" leaves them unverified (they are usually
	// self-signed).
	DeviceCA string
	// NoWebSSH turns off the SSH terminal in the browser (--no-web-ssh):
	// its page says so, its WebSocket answers 404, device pages offer no
	// terminal. With it on, the reflector is the SSH client and sees those
	// sessions in the clear (docs/web-ssh.md).
	NoWebSSH bool
	// AuditRetention is how long audit events are kept; default 90 days.
	AuditRetention time.Duration
	// Throttle tunes the failed-login limiter; zero fields take its
	// defaults (5 failures a minute, then 1 min doubling to 1 h).
	Throttle auth.LimiterConfig
	// ConnsPerAddr caps the connections one client address (an IPv6 /64)
	// holds on the TLS and proxy listeners that no handler has taken over
	// yet; beyond it, the address's new connections are closed at once.
	// TrustedProxies are not capped. Default 256 (connLimiter says why);
	// negative: no cap.
	ConnsPerAddr int
	// DrainDelay is how long shutdown keeps serving with /readyz answering
	// 503 before the listeners close, so load balancers probing it take
	// the reflector out of rotation first (health.go). Default 0: close at
	// once.
	DrainDelay time.Duration
	// PendingHandshakes bounds the agent handshakes in progress on both
	// agent endpoints; beyond it an agent is answered 503 with
	// Retry-After at once (admission.go). Default: what the CPUs finish
	// in 2.5 s by a calibration of argon2id at start (at least 64);
	// negative: no bound.
	PendingHandshakes int
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = ":8443"
	}
	if c.Domain == "" {
		c.Domain = "localhost"
	}
	if c.DataDir == "" {
		c.DataDir = "./reflector-data"
	}
	if c.PublicPort != "" {
		if n, err := strconv.ParseUint(c.PublicPort, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("public port %q is not a port number", c.PublicPort)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("TLS certificate and key go together")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = 90 * 24 * time.Hour
	}
	if c.AuditRetention < 0 {
		return errors.New("audit retention must be positive")
	}
	if c.DrainDelay < 0 {
		return errors.New("drain delay must not be negative")
	}
	if c.ConnsPerAddr == 0 {
		c.ConnsPerAddr = defaultConnsPerAddr
	}
	return nil
}

// Server is an assembled reflector, listening but not yet serving.
type Server struct {
	cfg         Config
	store       *store.Store
	hub         *tunnel.Hub
	guard       *auth.Guard
	admin       *admin.Admin
	ops         *ops.Service // the admin operations, for the control socket and the API
	api         *api.API
	web         *web.Web
	webSSH      *webssh.Server // nil with NoWebSSH
	deviceCAs   *x509.CertPool
	clients     auth.ClientResolver
	proxy       *proxy.Proxy
	cert        tls.Certificate
	listeners   []net.Listener // TLS first, then the optional ones
	servers     []*http.Server // one per listener
	connLimit   *connLimiter   // shared by the TLS and proxy listeners; nil: no cap
	admission   *admission     // of agent handshakes; nil: no bound
	health      *health        // the health checks; Run reports listeners serving and shutdown
	fdLimit     uint64         // RLIMIT_NOFILE at start; 0 if unknown
	proxyLn     net.Listener   // the plain proxy listener, or nil
	metricsLn   net.Listener   // the metrics listener, or nil
	control     net.Listener
	url         string
	fingerprint string
}

// New opens the data directory, loads or makes the certificate and opens the
// listeners. On error everything opened so far is closed again.
func New(cfg Config) (s *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s = &Server{cfg: cfg}
	built := s // the error returns below set s to nil
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	if s.clients.Trusted, err = auth.ParseTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	if cfg.DeviceCA != "" {
		pem, err := os.ReadFile(cfg.DeviceCA)
		if err != nil {
			return nil, fmt.Errorf("device CA: %w", err)
		}
		s.deviceCAs = x509.NewCertPool()
		if !s.deviceCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("device CA %s: no PEM certificates", cfg.DeviceCA)
		}
	}
	if s.store, err = store.Open(cfg.DataDir); err != nil {
		return nil, err
	}
	s.store.SetAuditRetention(cfg.AuditRetention)
	s.health = newHealth(s.store.Ping, cfg.Logger)
	s.admission = newHandshakeAdmission(cfg.PendingHandshakes, cfg.Logger)
	devices, err := s.store.DeviceCount()
	if err != nil {
		return nil, err
	}
	s.fdLimit, _ = descriptorLimit()
	checkDescriptors(cfg.Logger, s.fdLimit, devices, s.admission.bound())
	s.guard = auth.NewGuard(s.store, auth.NewLimiter(cfg.Throttle), cfg.Logger)
	if cfg.TLSCert != "" {
		s.cert, err = LoadCertificate(cfg.TLSCert, cfg.TLSKey)
	} else {
		s.cert, err = SelfSignedCertificate(cfg.DataDir, cfg.Domain)
	}
	if err != nil {
		return nil, err
	}
	s.fingerprint = CertificateFingerprint(s.cert)
	s.hub = tunnel.NewHub(cfg.Logger, tunnel.Subprotocol, webtunnel.Kind)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.listeners = append(s.listeners, ln) // wrapped in TLS below; closed by close either way
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if cfg.PublicPort != "" {
		port = cfg.PublicPort
	}
	b, err := brand.Load(cfg.BrandDir)
	if err != nil {
		return nil, err
	}
	s.admin, err = admin.New(admin.Config{
		Domain: cfg.Domain,
		Port:   port,
		Store:  s.store,
		Guard:  s.guard,
		Hub:    s.hub,
		// The web UI is built below, over the operations, which need the
		// proxy, which needs the admin host; requests come only after New.
		Web:    http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.web.ServeHTTP(w, r) }),
		Brand:  b,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if s.proxy, err = proxy.New(s.proxyConfig()); err != nil {
		return nil, err
	}
	s.url = "https://" + cfg.Domain
	if port != "443" {
		s.url = "https://" + net.JoinHostPort(cfg.Domain, port)
	}
	if s.ops, err = ops.New(ops.Config{
		Store:           s.store,
		Hub:             s.hub,
		Streams:         s.proxy,
		ReflectorURL:    s.url,
		Fingerprint:     s.fingerprint,
		WebTunnelDomain: cfg.WebTunnelDomain,
		AccessChanged:   s.accessChanged,
	}); err != nil {
		return nil, err
	}
	if s.api, err = api.New(api.Config{
		Ops:     s.ops,
		Guard:   s.guard,
		Session: s.admin.APISession,
		Origin:  s.admin.Origin(),
		Logger:  cfg.Logger,
	}); err != nil {
		return nil, err
	}
	if !cfg.NoWebSSH {
		if s.webSSH, err = webssh.New(s.webSSHConfig()); err != nil {
			return nil, err
		}
	}
	if s.web, err = web.New(web.Config{
		WebSSH:     s.webSSH,
		Ops:        s.ops,
		Session:    s.admin.APISession,
		SameOrigin: s.admin.SameOrigin,
		DeviceURL:  s.admin.DeviceURL,
		VNC:        s.proxy.ServeVNC,
		Brand:      b,
		Logger:     cfg.Logger,
	}); err != nil {
		return nil, err
	}
	if cfg.ConnsPerAddr > 0 {
		s.connLimit = newConnLimiter(cfg.ConnsPerAddr, s.clients.Trusted, cfg.Logger)
	}
	s.listeners[0] = s.connLimit.Listener(tlsbatch.Listener{Listener: ln, Config: serverTLSConfig(s.cert)})
	s.servers = append(s.servers, newHTTPServer(s.router(), cfg.Logger, s.connLimit))
	if cfg.ProxyListen != "" {
		pln, err := net.Listen("tcp", cfg.ProxyListen)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.ProxyListen, err)
		}
		s.listeners = append(s.listeners, s.connLimit.Listener(pln))
		proxyOnly := &router{clients: s.clients, proxy: s.proxy, proxyOnly: true}
		s.servers = append(s.servers, newHTTPServer(proxyOnly, cfg.Logger, s.connLimit))
		s.proxyLn = pln
	}
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.MetricsListen, err)
		}
		s.listeners = append(s.listeners, mln)
		// Loopback or a private network, and one scraper: not capped.
		s.servers = append(s.servers, newHTTPServer(metricsMux(s.metricsSource(), s.health), cfg.Logger, nil))
		s.metricsLn = mln
	}
	if s.control, err = control.Listen(cfg.DataDir, cfg.Logger); err != nil {
		return nil, err
	}
	return s, nil
}

// proxyConfig wires the proxy to the store and the hub.
func (s *Server) proxyConfig() proxy.Config {
	return proxy.Config{
		Domain: s.cfg.Domain,
		Authenticate: func(ctx context.Context, client netip.Addr, user, secret string) (store.Credential, error) {
			if user == "" {
				return s.guard.Token(client, secret)
			}
			return s.guard.User(ctx, client, user, secret)
		},
		Recheck:    s.recheck,
		DeviceAuth: s.admin.DeviceAuth,
		DeviceCAs:  s.deviceCAs,
		Audit:      s.store.Audit,
		Device:     func(_ context.Context, id string) (store.Device, error) { return s.store.Device(id) },
		Dial:       s.hub.Dial,
		DeviceProperties: func(id string) map[string]string {
			st, _ := s.hub.Status(id)
			return st.Properties
		},
		Logger: s.cfg.Logger,
	}
}

// webSSHConfig wires the browser's SSH terminal to the proxy (its streams),
// the store (host keys, audit) and the hub (the agent's sshPort).
func (s *Server) webSSHConfig() webssh.Config {
	return webssh.Config{
		Open: func(ctx context.Context, cred store.Credential, client netip.Addr, device string, port uint16) (net.Conn, error) {
			return s.proxy.OpenStream(ctx, cred, client, device, port, proxy.ViaWebSSH)
		},
		HostKeys: s.store,
		Port: func(device string) uint16 {
			st, _ := s.hub.Status(device)
			n, err := strconv.ParseUint(st.Properties["sshPort"], 10, 16)
			if err != nil {
				return 0
			}
			return uint16(n)
		},
		Audit:  s.store.Audit,
		Logger: s.cfg.Logger,
	}
}

// router is the TLS listener's router: the proxy, both agent endpoints,
// enrolment and the admin host.
func (s *Server) router() *router {
	return &router{
		clients: s.clients,
		proxy:   s.proxy,
		tunnel: &tunnel.Server{
			Hub:          s.hub,
			Logger:       s.cfg.Logger,
			Authenticate: s.authenticateDevice,
			Seen:         s.store.TouchDevice,
		},
		webTunnel: &webtunnel.Server{
			Hub:          s.hub,
			Logger:       s.cfg.Logger,
			Authenticate: s.authenticateDevice,
			Seen:         s.store.TouchDevice,
			Domain:       s.cfg.WebTunnelDomain,
		},
		enroll: &enroll.Handler{
			Logger: s.cfg.Logger,
			Enroll: func(_ context.Context, r *http.Request, key, device string) (string, error) {
				_, secret, err := s.guard.Enroll(tunnel.ClientAddr(r), key, device)
				return secret, err
			},
		},
		admin:  s.admin,
		novnc:  s.admin.ServeNoVNC,
		api:    s.api,
		health: s.health,
		admit:  s.admission,
	}
}

// newHandshakeAdmission returns the admission of agent handshakes of
// bound max: 0 derives it from the CPUs and a calibration of argon2id,
// negative means none (nil).
func newHandshakeAdmission(max int, logger *slog.Logger) *admission {
	if max < 0 {
		logger.Info("agent handshakes: no bound")
		return nil
	}
	check, cpus := store.MeasureDeviceCheck(), runtime.GOMAXPROCS(0)
	rate, bound := handshakeCapacity(check, cpus)
	if max == 0 {
		max = bound
	}
	logger.Info("agent handshakes: bounded", "max_pending", max, "argon2id_check", check.Round(10*time.Microsecond),
		"cpus", cpus, "per_second", int(rate))
	return newAdmission(max, rate, logger)
}

// authenticateDevice checks an agent's credentials for the tunnel endpoint
// while ctx, the agent's request's, lives.
func (s *Server) authenticateDevice(ctx context.Context, client netip.Addr, device, secret string) error {
	_, err := s.guard.Device(ctx, client, device, secret)
	if errors.Is(err, store.ErrBadCredentials) || errors.Is(err, store.ErrDisabled) {
		return fmt.Errorf("device %s: %w: %w", device, tunnel.ErrUnauthorized, err)
	}
	return err
}

// recheck reports whether an open stream's credential may still reach the
// device: the user and token still valid, the device still there, enabled
// and shared with the user. A store failure keeps the stream.
func (s *Server) recheck(cred store.Credential, device string) bool {
	fresh, ok := s.store.CredentialValid(cred)
	if !ok {
		return false
	}
	d, err := s.store.Device(device)
	if errors.Is(err, store.ErrNotFound) {
		return false
	}
	if err != nil {
		s.cfg.Logger.Error("re-check access", "device", device, "err", err)
		return true
	}
	return !d.Disabled && fresh.Allows(d)
}

// accessChanged re-checks open streams after an admin change.
func (s *Server) accessChanged() { s.proxy.Revalidate() }

// Run serves until ctx ends or a listener fails, then shuts down: /readyz
// turns 503 (and, when ctx ended, the listeners serve on for DrainDelay so
// load balancers notice), the HTTP servers stop taking requests, the goroutines Run started are joined, and
// close ends spliced connections, then tunnels (waiting for each endpoint to
// write its device's last-seen time), the control socket and last the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loops sync.WaitGroup
	loops.Go(func() {
		if err := control.Serve(ctx, s.control, control.Env{Ops: s.ops}, s.cfg.Logger); err != nil {
			s.cfg.Logger.Error("control socket", "err", err)
		}
	})
	loops.Go(func() { s.revalidateLoop(ctx) })
	errc := make(chan error, len(s.servers))
	s.health.expect(len(s.servers))
	for i, srv := range s.servers {
		srv.BaseContext = s.health.listenerServing // counts it serving for /readyz
		go func() { errc <- srv.Serve(s.listeners[i]) }()
	}
	serving := len(s.servers)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		serving--
	}
	s.health.drain()
	if err == nil && s.cfg.DrainDelay > 0 {
		s.cfg.Logger.Info("draining: /readyz answers 503", "for", s.cfg.DrainDelay)
		select {
		case <-time.After(s.cfg.DrainDelay):
		case err = <-errc:
			serving--
		}
	}
	s.cfg.Logger.Info("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	for _, srv := range s.servers {
		srv.Shutdown(shutdownCtx) // hijacked connections are the proxy's and the hub's to close
	}
	for ; serving > 0; serving-- {
		<-errc // Serve returns once Shutdown has closed its listener
	}
	cancel()
	loops.Wait() // admin commands still running finish before the store closes
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// revalidateEvery is how often open streams are re-checked without an admin
// change, so that tokens expiring while in use take effect.
const revalidateEvery = 30 * time.Second

func (s *Server) revalidateLoop(ctx context.Context) {
	t := time.NewTicker(revalidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.proxy.Revalidate()
		}
	}
}

// close releases what New opened; safe on a partly built server.
func (s *Server) close() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	if s.control != nil {
		s.control.Close()
	}
	if s.webSSH != nil {
		s.webSSH.Close() // before the proxy: its sessions' streams are the proxy's
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.hub != nil {
		s.hub.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// Addr is the TLS listener's address.
func (s *Server) Addr() net.Addr { return s.listeners[0].Addr() }

// ProxyAddr is the plain proxy listener's address, nil without one.
func (s *Server) ProxyAddr() net.Addr {
	if s.proxyLn == nil {
		return nil
	}
	return s.proxyLn.Addr()
}

// MetricsAddr is the metrics listener's address, or nil without one.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// URL is the reflector's address for users and agents: https://<domain>:<port>.
func (s *Server) URL() string { return s.url }

// Fingerprint is the certificate's SHA-256 pin, "sha256:<hex>".
func (s *Server) Fingerprint() string { return s.fingerprint }

// Certificate is the TLS certificate in use.
func (s *Server) Certificate() tls.Certificate { return s.cert }

// Store is the server's store, for in-process admin work (the demo, tests).
func (s *Server) Store() *store.Store { return s.store }

// Hub is the server's hub of connected devices.
func (s *Server) Hub() *tunnel.Hub { return s.hub }

// Ops is the server's one implementation of the admin operations, shared
// by the control socket and the REST API so that both check, change and
// audit alike.
func (s *Server) Ops() *ops.Service { return s.ops }

// maxHeaderBytes bounds a request's header on every listener (Go's default
// is 1 MiB, which anybody could make the server buffer per connection before
// any check; issue 15, item 7). Browsers send a few KiB; a long cookie
// jar or a bearer token fits many times over. Beyond it the answer is 431.
const maxHeaderBytes = 64 << 10

// newHTTPServer returns a server with the timeouts a proxy needs: headers
// must arrive promptly, but there is no write timeout, since tunnels and
// downloads last as long as they last. Bodies that anybody may send get
// their own read deadline where they are read (the login forms, the token
// endpoint, enrolment). limit, if not nil, counts the server's connections
// per client address (its Listener must wrap the server's listener).
func newHTTPServer(h http.Handler, logger *slog.Logger, limit *connLimiter) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true) // see tlscert.ServerConfig: no h2 on a proxy
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       120 * time.Second,
		Protocols:         &protocols,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		// Handlers that write bulk (the subdomain reverse proxy) batch the
		// TLS records of each write into one socket write.
		ConnContext: tlsbatch.ContextWithConn,
	}
	if limit != nil {
		srv.ConnState = limit.connState
	}
	return srv
}
