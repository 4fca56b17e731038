// Package admin is the reflector's own web site on the admin host
// (<domain>): the login (password, then TOTP when enrolled), server-side
// sessions in host-only cookies, the hand-off that gives each device
// subdomain its own session, and the PAC file for browsers. It also decides
// who a request on a device subdomain is (DeviceAuth) for the proxy, which
// forwards it, and serves remote-login's token endpoint
// (/my-devices/api/token, api_token.go).
//
// Two kinds of session exist, both store records named by an HttpOnly,
// Secure, SameSite=Lax, host-only cookie: SessionCookie on the admin host,
// and DeviceCookie on one device's subdomain, made from a one-time code the
// admin host hands over (handoff.go). A device's pages — code the reflector
// does not control, on a host of the same site — thus never hold a
// credential worth anything beyond that device.
package admin

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/admin/brand"
	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Cookie and header names. The __Host- prefix makes browsers refuse these
// cookies unless they are Secure, Path=/ and carry no Domain, so a device's
// pages on <device>.<domain> cannot plant one for the admin host or another
// device with Domain=<domain> (cookie tossing: a login into the attacker's
// account, or a session fixed in advance).
const (
	SessionCookie = "__Host-reflector_session" // admin-host session
	DeviceCookie  = "__Host-reflector_device"  // one device subdomain's session
	// StateCookie binds a hand-off to the browser that asked for it: set on
	// the device subdomain before it sends the browser to the admin host,
	// checked by the callback (as OAuth's state).
	StateCookie = "__Host-reflector_handoff"
	// AuthHeader carries "Bearer <API token>" on device-subdomain requests
	// from programs.
	AuthHeader = "X-Reflector-Authorization"
)

// Paths on a device subdomain that the reflector answers itself. Nothing
// under reservedPrefix reaches a device.
const (
	reservedPrefix   = "/.reflector/"
	callbackPath     = reservedPrefix + "callback"
	deviceLogoutPath = reservedPrefix + "logout"
	// websockifyPath is proxy.WebsockifyPath (noVNC's bridge), which
	// the router sends to the proxy; its requests authenticate here like
	// any other request on the device's host.
	websockifyPath = reservedPrefix + "websockify"
)

const (
	// handoffTTL is how long a hand-off code is valid (issue 4: 60 s).
	handoffTTL = 60 * time.Second
	// pendingTTL is how long a user has to enter their TOTP code after the
	// password.
	pendingTTL = 5 * time.Minute
	// maxTickets bounds each table of one-time codes (about 150 bytes an
	// entry). Codes are made only for users who passed a password or hold
	// a session, and expire within minutes.
	maxTickets = 10000
	// maxForm bounds a login form's body.
	maxForm = 16 << 10
)

// Config configures an Admin.
type Config struct {
	// Domain: the admin host is Domain, device pump-17 is pump-17.Domain.
	// Default "localhost".
	Domain string
	// Port is the TLS listener's port as browsers reach it, for the URLs the
	// site redirects to and for the PAC file; "443" or "" is left out of URLs.
	Port string
	// Store holds users, sessions and devices. Required.
	Store *store.Store
	// Guard checks passwords and TOTP codes, throttled and audited. Required.
	Guard *auth.Guard
	// Hub, if set, gives the devices' online status on the start page;
	// nil shows none.
	Hub *tunnel.Hub
	// Web, if set, is the web UI (package web): it serves the start page
	// and every path of the admin host this package does not. Nil keeps
	// the plain start page.
	Web http.Handler
	// Brand gives the pages' texts, and their stylesheet, logo and
	// favicon (served by Web); nil is brand.Default().
	Brand *brand.Brand
	// Logger; nil discards.
	Logger *slog.Logger
}

// Admin serves the admin host and authenticates device-subdomain requests.
type Admin struct {
	cfg  Config
	mux  *http.ServeMux
	log  *slog.Logger
	now  func() time.Time
	base string // https://<domain>[:port], the admin host's origin

	brand *brand.Brand
	pages map[string]*template.Template
	csp   string // the pages' Content-Security-Policy

	novncCSP string // noVNC's app's (novnc.go)

	handoffTTL time.Duration
	pendingTTL time.Duration
	handoffs   *tickets[handoff]      // one-time codes for device callbacks
	pending    *tickets[pendingLogin] // password accepted, TOTP code next
}

// handoff is what a hand-off code stands for.
type handoff struct {
	user, device string
	state        string // the StateCookie of the browser that asked
}

// pendingLogin is a login waiting for its TOTP code.
type pendingLogin struct {
	user    string
	expires time.Time // of the first pending token; a retry does not extend it
}

// New returns an Admin for cfg.
func New(cfg Config) (*Admin, error) {
	if cfg.Store == nil || cfg.Guard == nil {
		return nil, errors.New("admin config: Store and Guard are required")
	}
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	cfg.Domain = strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if !validDomain(cfg.Domain) {
		return nil, fmt.Errorf("admin config: domain %q is not a DNS name", cfg.Domain)
	}
	if cfg.Port != "" {
		if n, err := strconv.ParseUint(cfg.Port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("admin config: port %q", cfg.Port)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Brand == nil {
		cfg.Brand = brand.Default()
	}
	pages, err := parsePages(cfg.Brand)
	if err != nil {
		return nil, fmt.Errorf("admin pages: %w", err)
	}
	a := &Admin{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        time.Now,
		handoffTTL: handoffTTL,
		pendingTTL: pendingTTL,
		handoffs:   newTickets[handoff](maxTickets),
		pending:    newTickets[pendingLogin](maxTickets),
		brand:      cfg.Brand,
		pages:      pages,
	}
	a.base = "https://" + a.hostPort(cfg.Domain)
	a.csp = pagePolicy(a.base)
	if a.novncCSP, err = novncPolicy(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	a.mux = a.routes()
	return a, nil
}

func (a *Admin) routes() *http.ServeMux {
	mux := http.NewServeMux()
	if a.cfg.Web != nil {
		mux.Handle("/", a.cfg.Web)
	} else {
		mux.HandleFunc("GET /{$}", a.serveHome)
		mux.HandleFunc("/", notFound)
	}
	mux.HandleFunc("GET /login", a.serveLoginForm)
	mux.HandleFunc("POST /login", a.serveLogin)
	mux.HandleFunc("POST /login/totp", a.serveTOTP)
	mux.HandleFunc("GET /logout", a.serveLogoutForm)
	mux.HandleFunc("POST /logout", a.serveLogout)
	mux.HandleFunc("GET /auth/handoff", a.serveHandoff)
	mux.HandleFunc("GET /proxy.pac", a.servePAC)
	mux.HandleFunc(apiTokenPath, a.serveAPIToken) // any method: 405 is its own, in JSON
	return mux
}

// ServeHTTP serves the admin host: /login, /logout, /auth/handoff,
// /proxy.pac, a start page and remote-login's /my-devices/api/token.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "not found", http.StatusNotFound)
}

// hostPort returns host with the listener's port, left out when it is
// HTTPS's own.
func (a *Admin) hostPort(host string) string {
	if a.cfg.Port == "" || a.cfg.Port == "443" {
		return host
	}
	return net.JoinHostPort(host, a.cfg.Port)
}

// DeviceURL is the URL of device's subdomain, its web UI.
func (a *Admin) DeviceURL(device string) string { return a.deviceBase(device) + "/" }

// deviceBase is the origin of device's subdomain.
func (a *Admin) deviceBase(device string) string {
	return "https://" + a.hostPort(device+"."+a.cfg.Domain)
}

// publicPort is the port browsers reach the reflector at, "443" when the
// config leaves it out: the PAC file's HTTPS directive always names one.
func (a *Admin) publicPort() string {
	if a.cfg.Port == "" {
		return "443"
	}
	return a.cfg.Port
}

// validDomain reports whether d is a lower-case DNS name: labels of
// letters, digits and inner hyphens. It ends up in URLs and in the PAC
// file's JavaScript, so nothing else may pass.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if !tunnel.ValidDeviceID(label) {
			return false
		}
	}
	return true
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
