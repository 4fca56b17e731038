// Package ops is the one implementation of each admin operation — add a
// device, rotate its secret, add a user, make a token, cut a stream… —
// called alike by the control socket (internal/control), the REST API
// (admin/api) and the web UI. Each operation takes the Caller it acts for,
// checks what that caller may do (an admin manages everything; a user sees
// the devices of their groups and manages their own tokens, password and
// TOTP), makes the change in the store, tells the server when access may
// have been taken away so that open streams are checked again, and writes
// the audit log with the caller as actor. Errors wrap the store's sentinels
// (store.ErrNotFound, store.ErrExists, store.ErrInvalid with a
// *store.FieldError naming the input, …) or ErrForbidden, so that each
// front maps them to its own answer: an exit code and a line, or an HTTP
// status and a JSON error.
package ops

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// ErrForbidden: the caller may not do this (a user on an admin operation, or
// on another user's records).
var ErrForbidden = errors.New("forbidden")

// Config is what a Service works on. Store is required; every other field
// may be left zero.
type Config struct {
	Store *store.Store
	// Hub tells which devices are connected; nil when no server runs, and
	// every device is then offline.
	Hub *tunnel.Hub
	// Streams lists and cuts the proxy's open streams; nil when no server
	// runs (there are none).
	Streams Streams
	// ReflectorURL is the reflector as agents reach it, e.g.
	// https://devices.example.com:8443, for the agent command lines and
	// WebTunnelAgent.properties; "" writes a placeholder.
	ReflectorURL string
	// Fingerprint is "sha256:<hex>" of the reflector's certificate, for our
	// agent's --fingerprint; "" when the certificate is trusted anyway.
	Fingerprint string
	// WebTunnelDomain is the @domain WebTunnelAgents put in their user name
	// (serve --webtunnel-domain); "" for the agent's own default.
	WebTunnelDomain string
	// AccessChanged, when set, is called after every change that may take
	// access away (users, groups, tokens, device groups and ports,
	// disable, removal), so the server re-checks open streams.
	AccessChanged func()
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Streams is the proxy's registry of open streams (*proxy.Proxy).
type Streams interface {
	Streams(device string) []proxy.Stream
	CutStream(device, id string) (proxy.Stream, bool)
}

// Service runs admin operations. It is safe for concurrent use.
type Service struct {
	cfg Config
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("ops config: Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Store returns the store the service works on, for reads no operation
// covers.
func (s *Service) Store() *store.Store { return s.cfg.Store }

// Caller is who an operation acts for.
type Caller struct {
	// User is the user, as authenticated; for the control socket a
	// stand-in named LocalActor with the admin role.
	User store.User
	// Local marks the control socket: someone on the reflector's host who
	// may already read the database. Only Local may back up the database.
	Local bool
	// TokenID is the API token the user authenticated with, "" for a
	// password or a web session.
	TokenID string
	// Devices is the token's device pattern ("" for all): a token limited
	// to some devices sees and manages only those, whoever its user is.
	Devices string
	// Client is the caller's address, for the audit log; zero for Local.
	Client netip.Addr
}

// LocalActor is the actor the audit log names for the control socket.
const LocalActor = "local"

// Local is the caller for admin commands typed on the reflector's host.
func Local() Caller {
	return Caller{User: store.User{Name: LocalActor, Role: store.RoleAdmin}, Local: true}
}

// FromCredential is the caller a request authenticated with cred, from
// client, acts as.
func FromCredential(cred store.Credential, client netip.Addr) Caller {
	return Caller{User: cred.User, TokenID: cred.TokenID, Devices: cred.Devices, Client: client}
}

// Admin reports whether the caller has the admin role.
func (c Caller) Admin() bool { return c.Local || c.User.Role == store.RoleAdmin }

// credential is the caller as the store's access check takes it.
func (c Caller) credential() store.Credential {
	return store.Credential{User: c.User, TokenID: c.TokenID, Devices: c.Devices}
}

// reaches reports whether the caller may see and reach d.
func (c Caller) reaches(d store.Device) bool { return c.credential().Allows(d) }

// requireAdmin returns ErrForbidden, wrapped with what was tried, unless
// the caller is an admin.
func (c Caller) requireAdmin(what string) error {
	if c.Admin() {
		return nil
	}
	return fmt.Errorf("%s: %w: administrators only", what, ErrForbidden)
}

// self reports whether the caller is the user named name (and not the
// control socket's stand-in).
func (c Caller) self(name string) bool { return !c.Local && c.User.Name == name }

// requireSelfOrAdmin returns ErrForbidden unless the caller is an admin or
// the user named name.
func (c Caller) requireSelfOrAdmin(what, name string) error {
	if c.Admin() || c.self(name) {
		return nil
	}
	return fmt.Errorf("%s: %w: only the user themselves or an administrator", what, ErrForbidden)
}

// audit records a change the caller made. Call it only after the change
// succeeded; it never blocks on the disk.
func (s *Service) audit(c Caller, e store.AuditEvent) {
	e.OK, e.Actor = true, c.User.Name
	if c.Client.IsValid() {
		e.Client = c.Client.String()
	}
	s.cfg.Store.Audit(e)
}

// accessChanged tells a running server that access may have been taken
// away. Without a server no streams are open.
func (s *Service) accessChanged() {
	if s.cfg.AccessChanged != nil {
		s.cfg.AccessChanged()
	}
}

// disconnect closes the device's tunnel and reports whether it was
// connected.
func (s *Service) disconnect(id string) bool {
	if s.cfg.Hub == nil {
		return false
	}
	_, online := s.cfg.Hub.Status(id)
	s.cfg.Hub.Disconnect(id)
	return online
}
