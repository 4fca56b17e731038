package tunnel

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// Wire constants of the agent's upgrade request (PROTOCOL.md, "Connect").
const (
	Path                 = "/tunnel/v1"
	Subprotocol          = "reflector.v1"
	HeaderPorts          = "X-Reflector-Ports"
	HeaderAgent          = "X-Reflector-Agent"
	HeaderPropertyPrefix = "X-Reflector-Property-"

	// MaxMessage bounds one WebSocket message from an agent of either
	// wire: one smux frame and its header, with room to spare.
	MaxMessage = 1 << 20
	// MaxPropertyLen bounds one property value an agent declares.
	MaxPropertyLen = 256
)

// PropertyNames are the device properties an agent may declare, spelled as
// in WebTunnelAgent's properties file.
var PropertyNames = []string{"deviceName", "deviceVersion", "httpPort", "httpsEnable",
	"sshPort", "vncPort", "rdpPort", "appPort", "targetHost"}

var deviceIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidDeviceID reports whether id is a DNS label, the only form of device id.
func ValidDeviceID(id string) bool { return deviceIDPattern.MatchString(id) }

// Server is the reflector's end of the tunnel: an http.Handler for Path that
// authenticates an agent, upgrades to WebSocket, runs the smux session and
// registers it with the hub until it ends.
type Server struct {
	Hub *Hub
	// Authenticate checks a device's credentials sent from client (the
	// agent's address, ClientAddr); ctx is the request's, which ends when
	// the agent hangs up. An error wrapping ErrUnauthorized answers 401, a
	// Throttled error 429 with Retry-After, any other 503.
	Authenticate func(ctx context.Context, client netip.Addr, device, secret string) error
	// Seen, if set, is told when a device connects and disconnects.
	Seen func(device string, at time.Time)
	// Logger; nil discards.
	Logger *slog.Logger

	// keeper, if set, replaces the process's keep-alive Keeper (tests
	// shorten the intervals).
	keeper *smuxsession.Keeper
	// served, if set, is called when a tunnel's goroutine is done (tests).
	served func()
}

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	// A small reader of its own: the hijacked 4 KiB one would be kept by
	// every idle tunnel, and frames longer than this bypass it anyway.
	ReadBufferSize: 512,
	// One smux frame fits the write buffer, so each message is one TLS write
	// rather than a 4 KiB record plus the rest; the pool means a buffer is
	// held only while writing, not per idle device.
	WriteBufferSize: MaxFrameSize + 64,
	WriteBufferPool: &sync.Pool{},
	Subprotocols:    []string{Subprotocol},
	CheckOrigin:     func(*http.Request) bool { return true }, // agents are not browsers; they authenticate
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// ServeHTTP authenticates the agent before upgrading, so a wrong secret costs
// the reflector no WebSocket and no smux session, then registers the tunnel
// with the hub and returns; the tunnel is served on a goroutine of its own
// until it ends, and Hub.Close waits for it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client := ClientAddr(r)
	log := s.logger().With("remote", client)
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "tunnel endpoint: WebSocket upgrade required", http.StatusBadRequest)
		return
	}
	device, secret, ok := r.BasicAuth()
	if !ok || !ValidDeviceID(device) {
		w.Header().Set("WWW-Authenticate", `Basic realm="reflector tunnel"`)
		http.Error(w, "device credentials required", http.StatusUnauthorized)
		log.Warn("agent without valid device credentials")
		return
	}
	log = log.With("device", device)
	if err := s.Authenticate(r.Context(), client, device, secret); err != nil {
		RefuseAgent(w, log, err)
		return
	}
	info, err := parseInfo(r, client)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		log.Warn("agent refused", "err", err)
		return
	}
	if !hasSubprotocol(r, Subprotocol) {
		http.Error(w, "tunnel endpoint: subprotocol "+Subprotocol+" required", http.StatusBadRequest)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Warn("agent upgrade failed", "err", err) // gorilla has answered already
		return
	}
	ws.SetReadLimit(MaxMessage)
	k := s.keeper
	if k == nil {
		k = keeper
	}
	sess := smuxsession.New(NewWSConn(ws), serverMuxConfig(k))
	reg := s.Hub.Register(device, NewMuxTunnel(sess), info)
	start := time.Now()
	if s.Seen != nil {
		s.Seen(device, start)
	}
	log.Info("device connected", "ports", info.Ports, "agent", info.AgentVersion)
	// The session is read on a goroutine of its own and this one returns:
	// net/http's connection state (two 4 KiB buffers), the request and
	// this goroutine's stack, grown in the TLS handshake, would otherwise
	// stay for the tunnel's lifetime (issue 16: 27 KiB per idle tunnel).
	go s.serve(device, sess, reg, start, log)
}

// serve reads the session until it ends, then unregisters it.
func (s *Server) serve(device string, sess *smuxsession.Session, reg *Registration, start time.Time, log *slog.Logger) {
	err := sess.Run()
	if s.Seen != nil {
		s.Seen(device, time.Now()) // before Unregister: Hub.Close waits for it
	}
	log.Info("device disconnected", "connected_for", time.Since(start).Round(time.Second), "reason", disconnectReason(err))
	reg.Unregister()
	if s.served != nil {
		s.served()
	}
}

// disconnectReason is why a session ended, for the log.
func disconnectReason(err error) string {
	switch {
	case err == io.EOF:
		return "agent closed the connection"
	case errors.Is(err, smuxsession.ErrSessionClosed):
		return "closed by the reflector"
	}
	return err.Error()
}

// parseInfo reads the agent's declared ports and properties.
func parseInfo(r *http.Request, client netip.Addr) (DeviceInfo, error) {
	ports, err := ParsePorts(r.Header.Get(HeaderPorts))
	if err != nil {
		return DeviceInfo{}, fmt.Errorf("%s: %w", HeaderPorts, err)
	}
	if len(ports) == 0 {
		return DeviceInfo{}, fmt.Errorf("%s: no ports", HeaderPorts)
	}
	info := DeviceInfo{
		Kind:         Subprotocol,
		RemoteAddr:   ClientText(r),
		AgentVersion: PropertyValue(r.Header.Get(HeaderAgent)),
		Ports:        ports,
		Properties:   make(map[string]string),
	}
	for _, name := range PropertyNames {
		if v := r.Header.Get(HeaderPropertyPrefix + name); v != "" {
			info.Properties[name] = PropertyValue(v)
		}
	}
	return info, nil
}

func hasSubprotocol(r *http.Request, want string) bool {
	return slices.Contains(websocket.Subprotocols(r), want)
}

// BasicCredentials encodes user and password for an Authorization header.
func BasicCredentials(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// PropertyValue is v as the hub keeps it: cut to MaxPropertyLen bytes.
func PropertyValue(v string) string {
	if len(v) > MaxPropertyLen {
		return v[:MaxPropertyLen]
	}
	return v
}

// RefuseAgent answers an agent whose credentials Authenticate did not
// accept (the endpoint of either wire): 429 with Retry-After for a lockout, 401
// for wrong credentials, 503 when they could not be checked.
func RefuseAgent(w http.ResponseWriter, log *slog.Logger, err error) {
	if msg, ok := RetryLater(w.Header(), err); ok {
		// Logged once by whoever locked it out, not per attempt.
		http.Error(w, msg, http.StatusTooManyRequests)
		return
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The agent hung up while its check waited: nobody reads the answer.
		http.Error(w, "reflector cannot check credentials now", http.StatusServiceUnavailable)
		log.Debug("agent left before its credentials were checked", "err", err)
	case errors.Is(err, ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="reflector tunnel"`)
		http.Error(w, "wrong device credentials", http.StatusUnauthorized)
		log.Warn("agent refused", "err", err)
	default:
		http.Error(w, "reflector cannot check credentials now", http.StatusServiceUnavailable)
		log.Error("check device credentials", "err", err)
	}
}
