// Package webssh is the reflector's side of the SSH terminal in the browser
// (issue 19; docs/web-ssh.md): the page of admin/web runs xterm.js and
// talks to the reflector over one WebSocket on the admin host, and the
// reflector itself is the SSH client, over a stream to the device's SSH
// port opened like every other (Config.Open: proxy.OpenStream, so it is
// checked, counted, listed, audited and ended when access is revoked). The
// reflector therefore sees the session in the clear; the device's host key
// is trusted on first use and kept per device in the store, and a changed
// key is refused before any credential is sent. protocol.go describes the
// WebSocket's messages; session.go runs one session.
package webssh

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/reflector-dev/reflector/store"
)

// Config configures a Server.
type Config struct {
	// Open opens a stream to port of device for cred at client, checked and
	// tracked as every stream (proxy.OpenStream with proxy.ViaWebSSH); the
	// session closes it when it ends. Required.
	Open func(ctx context.Context, cred store.Credential, client netip.Addr, device string, port uint16) (net.Conn, error)
	// HostKeys keeps the devices' host keys (*store.Store). Required.
	HostKeys HostKeys
	// Port returns the device's SSH port: its agent's sshPort property.
	// Nil, or 0, means 22.
	Port func(device string) uint16
	// Audit receives host key events: a key trusted on first use, a
	// changed key refused. Nil drops them.
	Audit func(store.AuditEvent)
	// LoginTimeout bounds the time from the WebSocket's opening to the
	// shell's start, the user's answers to prompts included. Default 5 min.
	LoginTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// HostKeys is where the devices' SSH host keys are kept (store.Store).
type HostKeys interface {
	// SetHostKey keeps key if device has none and returns the device's
	// key: this one (first set), or the one kept before.
	SetHostKey(device string, key []byte) (store.HostKey, bool, error)
}

// Server runs the browser's SSH sessions. Close ends them and waits.
type Server struct {
	cfg Config

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	mu     sync.Mutex // orders wg.Add with Close's Wait
	closed bool
	wg     sync.WaitGroup
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Open == nil || cfg.HostKeys == nil {
		return nil, errors.New("webssh config: Open and HostKeys are required")
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Audit == nil {
		cfg.Audit = func(store.AuditEvent) {}
	}
	s := &Server{cfg: cfg}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close ends every session and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// upgrader takes the page's WebSocket. The Origin is the caller's to check
// before Serve (admin/web: exactly the admin host), since only it knows
// the admin host; gorilla's own check would be a second, weaker one.
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4096,
	WriteBufferSize:  32 << 10, // a screenful of output in one message and one write
	CheckOrigin:      func(*http.Request) bool { return true },
}

// Serve upgrades r to the page's WebSocket and runs one SSH session on it
// for cred, from client, to device, until the shell exits, the page goes,
// the stream ends (access revoked, cut, device gone) or the Server closes.
// The caller has authenticated r, checked its Origin and that cred may see
// device; the stream's open checks access again.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, cred store.Credential, client netip.Addr, device string) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "web SSH: a WebSocket upgrade required", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "web SSH: the reflector is shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla has answered
	}
	ws.SetReadLimit(maxMessage)
	port := uint16(0)
	if s.cfg.Port != nil {
		port = s.cfg.Port(device)
	}
	if port == 0 {
		port = 22
	}
	ss := &session{
		srv: s, ws: ws, cred: cred, client: client, device: device, port: port,
		log:     s.cfg.Logger.With("user", cred.User.Name, "device", device, "port", port, "client", client),
		answers: make(chan []string, 1),
		done:    make(chan struct{}),
	}
	ss.run(s.ctx)
}

// Fingerprint is the SHA-256 fingerprint of an SSH public key in the wire
// format, as OpenSSH prints it ("SHA256:…"); "" if key does not parse.
func Fingerprint(key []byte) string {
	k, err := ssh.ParsePublicKey(key)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}
