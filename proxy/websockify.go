package proxy

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
)

// websockify: the WebSocket-to-stream bridge noVNC speaks (issue 19), on a
// device's host: GET <path>?port=N upgrades to a WebSocket whose binary
// messages carry the raw bytes of a stream to port N of the device.
const (
	// WebsockifyPath is the reflector's own path for the bridge on a
	// device host (admin.reservedPrefix).
	WebsockifyPath = "/.reflector/websockify"
	// MacchinaWebsockifyPath is the path macchina.io REMOTE serves it at;
	// existing bookmarks and scripts use it.
	MacchinaWebsockifyPath = "/my-devices/websockify"
	// websockifySubprotocol is what noVNC asks for; older clients ask for
	// none (also binary) or "base64", which is not supported.
	websockifySubprotocol = "binary"
	// defaultVNCPort when neither the query nor the agent's vncPort
	// property names one.
	defaultVNCPort = 5900
)

var websockifyUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   0,
	WriteBufferSize:  4096,
	Subprotocols:     []string{websockifySubprotocol},
	// checkWebsockifyOrigin has run before anything was authorised.
	CheckOrigin: func(*http.Request) bool { return true },
}

// noVNCAppDir is where the reflector serves noVNC's own app on a device
// host (admin.ServeNoVNC). noVNC 1.7's app resolves its "path" setting
// against the page's URL, so its default ("websockify") and macchina.io's
// ("my-devices/websockify") name the bridge below this directory.
const noVNCAppDir = "/.reflector/novnc/"

// IsWebsockify reports whether r, on a device host, asks for the bridge;
// the router sends it to ServeWebsockify.
func IsWebsockify(r *http.Request) bool {
	switch r.URL.Path {
	case WebsockifyPath, MacchinaWebsockifyPath, noVNCAppDir + "websockify", noVNCAppDir + "my-devices/websockify":
		return true
	}
	return false
}

// ServeWebsockify bridges a browser's WebSocket to a stream to a port of
// device id, in the order of ServeClientTool: check the request and its
// Origin, authenticate (Authorization: Basic or Bearer for programs, else
// DeviceAuth: the device session cookie or X-Reflector-Authorization),
// authorise the port, open the stream and only then upgrade. It blocks for
// the stream's lifetime, tracked for Revalidate and audited as a stream.
func (p *Proxy) ServeWebsockify(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "websockify: a WebSocket upgrade (GET) required", http.StatusBadRequest)
		return
	}
	// A WebSocket is not bound by the same-origin policy and carries the
	// user's cookies: a page of another device host must not open one
	// (every device host is the same site). Checked before anything else.
	if !p.websockifyOrigin(r) {
		p.cfg.Logger.Warn("websockify: foreign origin refused", "device", id, "origin", r.Header.Get("Origin"), "client", tunnel.ClientAddr(r))
		http.Error(w, "websockify: refused: the page is not of this device's host or the reflector's", http.StatusForbidden)
		return
	}
	if protos := websocket.Subprotocols(r); len(protos) > 0 && !slices.Contains(protos, websockifySubprotocol) {
		http.Error(w, "websockify: subprotocol \"binary\" (or none) required; base64 is not supported", http.StatusBadRequest)
		return
	}
	port, portGiven := uint16(0), r.URL.Query().Get("port")
	if portGiven != "" {
		n, err := strconv.ParseUint(portGiven, 10, 16)
		if err != nil || n == 0 {
			http.Error(w, "websockify: port: 1-65535 required", http.StatusBadRequest)
			return
		}
		port = uint16(n)
	}
	client := tunnel.ClientAddr(r)
	var a access
	if r.Header.Get("Authorization") != "" {
		cred, err := p.authenticate(r.Context(), r.Header.Get("Authorization"), client)
		if err != nil {
			p.refuseClient(w, err)
			return
		}
		a.cred = cred
	} else {
		cred, ok := p.cfg.DeviceAuth(w, r, id)
		if !ok {
			return
		}
		a.cred = cred
	}
	if port == 0 {
		port = p.vncPort(id)
	}
	a.client, a.port = client, port
	// The same bridge as a client tool's: raw bytes in binary messages,
	// the browser's close frame half-closes the stream.
	p.bridgeWebSocket(w, r, id, a, ViaWebsockify, "websockify", &websockifyUpgrader)
}

// vncPort is the device's VNC port: its agent's vncPort property, else
// 5900.
func (p *Proxy) vncPort(id string) uint16 {
	if p.cfg.DeviceProperties != nil {
		if n, err := strconv.ParseUint(p.cfg.DeviceProperties(id)["vncPort"], 10, 16); err == nil && n != 0 {
			return uint16(n)
		}
	}
	return defaultVNCPort
}

// websockifyOrigin accepts a request without Origin (a program; browsers
// always send one on a WebSocket), or whose Origin is this device's host
// or the admin host (Domain) on the request's port, by the scheme the
// request came by.
func (p *Proxy) websockifyOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(origin)
	if err != nil || !equalFoldASCII(u.Scheme, scheme) || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false
	}
	if equalFoldASCII(u.Host, r.Host) {
		return true
	}
	admin := p.cfg.Domain
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		admin = net.JoinHostPort(admin, port)
	}
	return equalFoldASCII(u.Host, admin)
}
