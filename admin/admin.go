// Package admin is the reflector's own web site on the admin host
// (<domain>): the login (password, then TOTP when enrolled), server-side
// sessions in host-only cookies, the hand-off that gives each device
// subdomain its own session, and the PAC file for browsers. It also decides
// who a request on a device subdomain is (DeviceAuth) for the proxy, which
// forwards it. The admin UI and REST API are to come here too.
package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/reflector-dev/reflector/login"
	"github.com/reflector-dev/reflector/store"
)

// Config configures an Admin.
type Config struct {
	// Domain: the admin host is Domain, device pump-17 is pump-17.Domain.
	Domain string
	// Port is the TLS listener's port as browsers reach it, for the URLs the
	// site redirects to and for the PAC file; "443" or "" is left out of URLs.
	Port string
	// Store holds users, sessions and devices. Required.
	Store *store.Store
	// Guard checks passwords and TOTP codes, throttled and audited. Required.
	Guard *login.Guard
	// ClientAddr gives the client's address (clientip.Resolver.Addr); nil
	// means the socket's.
	ClientAddr func(*http.Request) netip.Addr
	// Logger; nil discards.
	Logger *slog.Logger
}

// Admin serves the admin host and authenticates device-subdomain requests.
type Admin struct {
	cfg Config
}

// New returns an Admin for cfg.
func New(cfg Config) (*Admin, error) {
	if cfg.Store == nil || cfg.Guard == nil {
		return nil, errors.New("admin config: Store and Guard are required")
	}
	return &Admin{cfg: cfg}, nil
}

// ServeHTTP serves the admin host: /login, /logout, /auth/handoff,
// /proxy.pac and a start page.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "reflector: use this address as an HTTP proxy to reach devices", http.StatusNotFound)
}

// DeviceAuth decides who a request on device's subdomain comes from. It
// answers the reflector's own paths there (/.reflector/callback,
// /.reflector/logout) and unauthenticated requests itself — a redirect to
// the admin host's hand-off for browsers, 401 with a JSON body for programs
// — and then returns false. Otherwise it returns the credential (from the
// device's own session cookie or an X-Reflector-Authorization: Bearer
// token) with the reflector's cookie and header removed from r, so the
// device never sees them. Whether the credential may reach the device is
// the caller's check (store.Credential.Allows).
func (a *Admin) DeviceAuth(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool) {
	http.Error(w, "device browsing is not available yet", http.StatusNotFound)
	return store.Credential{}, false
}
