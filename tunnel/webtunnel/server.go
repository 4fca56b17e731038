package webtunnel

import (
	"github.com/reflector-dev/reflector/tunnel"

	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Wire constants of a WebTunnelAgent's upgrade (PROTOCOL.md §6;
// integration/testdata/macchina-sdk-2.5.0/README.md has a captured request).
const (
	// ServerSubprotocol marks an agent's tunnel upgrade.
	ServerSubprotocol = "com.appinf.webtunnel.server/1.0"
	// Kind is tunnel.DeviceInfo.Kind of a WebTunnelAgent's tunnel.
	Kind = "webtunnel"
	// HeaderKeepAlive carries the agent's keep-alive in seconds; our
	// answer in the 101 sets the agent's.
	HeaderKeepAlive = "X-WebTunnel-KeepAlive"
	// HeaderProperty carries one device property: `device;key=value`.
	HeaderProperty = "X-PTTH-Set-Property"

	// DefaultKeepAlive is the keep-alive answered when the agent sends
	// none, and the cap on what it asks for: the agent pings after this much
	// silence, which keeps load balancers' idle timers (often 60 s) busy.
	DefaultKeepAlive = 60 * time.Second
	minKeepAlive     = 10 * time.Second
	// idleMargin is how long past its keep-alive an agent's ping may be
	// late: a round trip and a busy device.
	idleMargin = 30 * time.Second
)

// Server is the reflector's end of a WebTunnelAgent's tunnel: an
// http.Handler for any request carrying ServerSubprotocol (POST or GET, any
// path). It authenticates the agent before upgrading, then registers the
// tunnel with the hub and serves it until it ends, like Server for our own
// agent.
type Server struct {
	Hub *tunnel.Hub
	// Authenticate checks a device's password sent from client (the
	// agent's address, tunnel.ClientAddr); device is the user part of the
	// agent's "deviceId@domain" Basic user. An error wrapping
	// tunnel.ErrUnauthorized answers 401, a tunnel.Throttled error 429 with
	// Retry-After, any other 503. ctx is the request's, which ends when the
	// agent hangs up.
	Authenticate func(ctx context.Context, client netip.Addr, device, password string) error
	// Domain, if set, is the only "@domain" accepted (compared without
	// regard to case); empty accepts any, or none.
	Domain string
	// Seen, if set, is told when a device connects and disconnects.
	Seen func(device string, at time.Time)
	// Logger; nil discards.
	Logger *slog.Logger
	// MaxKeepAlive caps the keep-alive answered to the agent; zero means
	// DefaultKeepAlive. A tunnel that neither sent nor took anything for
	// its keep-alive plus idleMargin is dead.
	MaxKeepAlive time.Duration
	// ChannelQueue bounds what one channel may queue for a slow user; zero
	// means DefaultChannelQueue.
	ChannelQueue int
	// StallTimeout is how long a full channel may hold up its tunnel before
	// it is closed; zero means DefaultStallTimeout.
	StallTimeout time.Duration
}

// upgrader keeps what an idle tunnel holds small (issue 16).
var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	// Not the hijacked connection's 4 KiB reader: gorilla peeks at most a
	// frame header or a control frame (125 bytes) in its reader, and reads
	// bigger payloads past it, straight from crypto/tls, which holds the
	// whole record already. 256 bytes cost an idle tunnel 256 bytes.
	ReadBufferSize: 256,
	// The tunnel writes its messages itself (message.go). A pool, never
	// used, keeps gorilla from allocating a write buffer per connection or
	// keeping the hijacked one; its control frames need none.
	WriteBufferPool: new(sync.Pool),
	Subprotocols:    []string{ServerSubprotocol},
	CheckOrigin:     func(*http.Request) bool { return true }, // agents are not browsers; they authenticate
}

// IsAgentUpgrade reports whether r is a WebTunnelAgent's tunnel upgrade:
// what server/server.go routes to a Server.
func IsAgentUpgrade(r *http.Request) bool {
	return slices.Contains(websocket.Subprotocols(r), ServerSubprotocol)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// ServeHTTP authenticates and upgrades, registers the tunnel with the hub
// and returns, leaving the tunnel to a goroutine of its own: net/http's
// goroutine, its grown stack (TLS handshake, request parsing), buffers and
// the request are gone before the tunnel goes idle (issue 16). Hub.Close
// waits for that goroutine.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client := tunnel.ClientAddr(r)
	log := s.logger().With("remote", client)
	if !websocket.IsWebSocketUpgrade(r) || !IsAgentUpgrade(r) {
		http.Error(w, "webtunnel endpoint: WebSocket upgrade with "+ServerSubprotocol+" required", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "webtunnel endpoint: POST or GET", http.StatusMethodNotAllowed)
		return
	}
	device, ok := s.deviceID(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="reflector tunnel"`)
		http.Error(w, "device credentials required", http.StatusUnauthorized)
		log.Warn("webtunnel agent without valid device credentials")
		return
	}
	_, password, _ := r.BasicAuth()
	log = log.With("device", device)
	if err := s.Authenticate(r.Context(), client, device, password); err != nil {
		tunnel.RefuseAgent(w, log, err)
		return
	}
	info, err := parseInfo(r, client)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		log.Warn("webtunnel agent refused", "err", err)
		return
	}
	keepAlive := s.keepAlive(r)
	hdr := http.Header{HeaderKeepAlive: {strconv.Itoa(int(keepAlive / time.Second))}}
	// gorilla's Upgrader (v1.5.3, server.go) refuses any method but GET with
	// 405; WebTunnelAgent upgrades with POST (and no body). RFC 6455 asks for
	// GET, but the handshake is otherwise the same, so the request, checked
	// above, is presented to gorilla as the GET it stands for.
	r.Method = http.MethodGet
	ws, err := upgrader.Upgrade(w, r, hdr)
	if err != nil {
		log.Warn("webtunnel agent upgrade failed", "err", err) // gorilla has answered already
		return
	}
	t := newAgentTunnel(ws, info, tunnelConfig{
		Idle:         keepAlive + idleMargin,
		ChannelQueue: s.ChannelQueue,
		StallTimeout: s.StallTimeout,
		Logger:       log,
	})
	reg := s.Hub.Register(device, t, info)
	t.cfg.Declared = reg.Update // before run, its only reader
	go s.serve(t, reg, device, info, log)
}

// serve runs the registered tunnel t until it ends, then unregisters it.
func (s *Server) serve(t *agentTunnel, reg *tunnel.Registration, device string, info tunnel.DeviceInfo, log *slog.Logger) {
	start := time.Now()
	if s.Seen != nil {
		s.Seen(device, start)
	}
	log.Info("device connected", "kind", Kind, "ports", info.Ports, "agent", info.AgentVersion)
	err := t.run()
	if s.Seen != nil {
		s.Seen(device, time.Now()) // before Unregister: Hub.Close waits for it
	}
	reg.Unregister()
	log.Info("device disconnected", "connected_for", time.Since(start).Round(time.Second), "err", err)
}

// deviceID returns the device of the Basic user "deviceId@domain", checking
// the domain when one is configured.
func (s *Server) deviceID(r *http.Request) (string, bool) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	device, domain, _ := strings.Cut(user, "@")
	device = strings.ToLower(device)
	if !tunnel.ValidDeviceID(device) {
		return "", false
	}
	if s.Domain != "" && !strings.EqualFold(domain, s.Domain) {
		return "", false
	}
	return device, true
}

// keepAlive is the agent's X-WebTunnel-KeepAlive, held to
// [10 s, MaxKeepAlive].
func (s *Server) keepAlive(r *http.Request) time.Duration {
	limit := s.MaxKeepAlive
	if limit <= 0 {
		limit = DefaultKeepAlive
	}
	n, err := strconv.Atoi(strings.TrimSpace(r.Header.Get(HeaderKeepAlive)))
	if err != nil || n <= 0 {
		return limit
	}
	d := time.Duration(min(n, 86400)) * time.Second
	return max(min(d, limit), minKeepAlive)
}

// parseInfo reads the agent's X-PTTH-Set-Property headers.
func parseInfo(r *http.Request, client netip.Addr) (tunnel.DeviceInfo, error) {
	info := tunnel.DeviceInfo{
		Kind:         Kind,
		RemoteAddr:   tunnel.ClientText(r),
		AgentVersion: tunnel.PropertyValue(r.Header.Get("User-Agent")),
		Properties:   make(map[string]string),
	}
	for _, h := range r.Header.Values(HeaderProperty) {
		key, value, ok := parsePropertyHeader(h)
		if !ok {
			continue
		}
		name, v, ok := property(key, value)
		if !ok {
			continue
		}
		if name == "targetPorts" {
			ports, err := tunnel.ParsePorts(v)
			if err != nil {
				return tunnel.DeviceInfo{}, fmt.Errorf("%s targetPorts: %w", HeaderProperty, err)
			}
			info.Ports = ports
			continue
		}
		info.Properties[name] = v
	}
	if len(info.Ports) == 0 {
		return tunnel.DeviceInfo{}, fmt.Errorf("%s: no targetPorts", HeaderProperty)
	}
	return info, nil
}

// parsePropertyHeader splits `device;key=value`; a value in double quotes
// is unquoted (`\"` and `\\` escapes).
func parsePropertyHeader(h string) (key, value string, ok bool) {
	scope, rest, ok := strings.Cut(h, ";")
	if !ok || !strings.EqualFold(strings.TrimSpace(scope), "device") {
		return "", "", false
	}
	key, value, ok = strings.Cut(rest, "=")
	if !ok {
		return "", "", false
	}
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if key == "" {
		return "", "", false
	}
	if len(value) >= 2 && value[0] == '"' {
		var b strings.Builder
		i := 1
		for ; i < len(value) && value[i] != '"'; i++ {
			if value[i] == '\\' && i+1 < len(value) {
				i++
			}
			b.WriteByte(value[i])
		}
		if i >= len(value) {
			return "", "", false // no closing quote
		}
		value = b.String()
	}
	return key, value, true
}

// property maps a WebTunnel property onto the name our agent uses for it
// (PROTOCOL.md §1); targetPorts and targetHost keep their names. Others are
// dropped.
func property(key, value string) (name, v string, ok bool) {
	switch key {
	case "targetPorts", "targetHost", "httpPort", "sshPort", "vncPort", "rdpPort":
		name = key
	case "https.enable":
		name = "httpsEnable"
	case "name":
		name = "deviceName"
	case "version":
		name = "deviceVersion"
	default:
		return "", "", false
	}
	return name, tunnel.PropertyValue(value), true
}
