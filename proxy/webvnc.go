package proxy

import (
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// ViaWebVNC is the path of the web UI's VNC viewer: a browser's WebSocket
// on the admin host, bridged to a stream to the device's VNC port
// (ServeVNC).
const ViaWebVNC = "web-vnc"

var webVNCUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   0,
	WriteBufferSize:  4096,
	Subprotocols:     []string{websockifySubprotocol},
	// ServeVNC's caller has checked the Origin (the admin host's exactly)
	// before it authenticated the request.
	CheckOrigin: func(*http.Request) bool { return true },
}

// ServeVNC bridges the web UI's VNC viewer, a browser's WebSocket on the
// admin host, to a stream to port of device id: websockify's bridge
// (noVNC speaks the same), for a request its caller has already
// authenticated as cred (the admin host's session cookie) and whose Origin
// it has checked. Port 0 is the agent's vncPort property, else 5900. The
// stream passes the same checks as every other (access to the device, the
// record's ports), is listed as ViaWebVNC, counted, audited with the reason
// "web-vnc", and ended by Revalidate and CutStream. It blocks for the
// stream's lifetime.
func (p *Proxy) ServeVNC(w http.ResponseWriter, r *http.Request, cred store.Credential, id string, port uint16) {
	if r.Method != http.MethodGet || !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "vnc: a WebSocket upgrade (GET) required", http.StatusBadRequest)
		return
	}
	if protos := websocket.Subprotocols(r); len(protos) > 0 && !slices.Contains(protos, websockifySubprotocol) {
		http.Error(w, "vnc: subprotocol \"binary\" (or none) required", http.StatusBadRequest)
		return
	}
	if port == 0 {
		port = p.vncPort(id)
	}
	a := access{cred: cred, client: tunnel.ClientAddr(r), port: port}
	p.bridgeWebSocket(w, r, id, a, ViaWebVNC, ViaWebVNC, &webVNCUpgrader)
}
