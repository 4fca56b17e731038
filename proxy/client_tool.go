package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
)

// The client side of macchina.io REMOTE's WebTunnel (remote-client,
// remote-ssh, remote-scp; integration/testdata/macchina-sdk-2.5.0/README.md has a captured
// request): a WebSocket upgrade, POST or GET, on a device's host
// (<id>.<Domain>), asking for one port of that device. The WebSocket then
// carries the stream's raw bytes in binary messages, no channel header.
const (
	// ClientToolSubprotocol marks a client tool's upgrade.
	ClientToolSubprotocol = "com.appinf.webtunnel.client/1.0"
	// HeaderRemotePort names the device port the client wants.
	HeaderRemotePort = "X-WebTunnel-RemotePort"

	// clientToolMessage bounds a message toward the client: the tools read
	// frames into a buffer of this size and take a larger one for an error.
	clientToolMessage = 2048
	// clientToolCloseGrace is how long a client may stay silent after our
	// close frame before the connection is dropped; data it still sends
	// (its half of a half-closed stream) extends it.
	clientToolCloseGrace = 30 * time.Second
)

var clientToolUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   0,    // reuse the hijacked connection's reader
	WriteBufferSize:  4096, // one 2,048-byte message and its header: one write
	Subprotocols:     []string{ClientToolSubprotocol},
	// The tools send no Origin. A browser page could not add
	// X-WebTunnel-RemotePort, which is required, but a foreign Origin is
	// refused anyway.
	CheckOrigin: sameOriginOrNone,
}

// clientToolBuffers are the buffers stream bytes go through to the client,
// one message's worth each.
var clientToolBuffers = sync.Pool{New: func() any {
	b := make([]byte, clientToolMessage)
	return &b
}}

// IsClientToolUpgrade reports whether r is a client tool's WebTunnel
// upgrade, which the router sends to ServeClientTool on a device host.
func IsClientToolUpgrade(r *http.Request) bool {
	return slices.Contains(websocket.Subprotocols(r), ClientToolSubprotocol)
}

// ServeClientTool serves a client tool's upgrade on the host of device id,
// in the order of ServeConnect: check the request, authenticate
// (Authorization: Basic user:password-or-token, or Bearer token),
// authorise, open the stream to the device and only then upgrade, so that
// every failure is an ordinary HTTP status. It blocks for the stream's
// lifetime, which is tracked for Revalidate and audited as a stream when it
// ends.
func (p *Proxy) ServeClientTool(w http.ResponseWriter, r *http.Request, id string) {
	if !websocket.IsWebSocketUpgrade(r) || !IsClientToolUpgrade(r) {
		http.Error(w, "webtunnel client endpoint: WebSocket upgrade with "+ClientToolSubprotocol+" required", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "webtunnel client endpoint: POST or GET", http.StatusMethodNotAllowed)
		return
	}
	n, err := strconv.ParseUint(strings.TrimSpace(r.Header.Get(HeaderRemotePort)), 10, 16)
	if err != nil || n == 0 {
		http.Error(w, HeaderRemotePort+": a port 1-65535 required", http.StatusBadRequest)
		return
	}
	port := uint16(n)
	client := tunnel.ClientAddr(r)
	cred, err := p.authenticate(r.Context(), r.Header.Get("Authorization"), client)
	if err != nil {
		p.refuseClient(w, err)
		return
	}
	// gorilla's Upgrader refuses any method but GET; the tools upgrade
	// with POST (and no body), checked above (as webtunnel.Server).
	r.Method = http.MethodGet
	p.bridgeWebSocket(w, r, id, access{cred: cred, client: client, port: port}, ViaClientTool, "webtunnel", &clientToolUpgrader)
}

// bridgeWebSocket serves what a client tool's upgrade and websockify's
// share once the request is checked and a.cred (and a.client, a.port)
// known: authorise a's port of device id, open the stream and only then
// upgrade with up, so that every failure is an ordinary HTTP status; then
// bridge binary messages and the stream (spliceClientTool) as grant via,
// audited with reason name, until either side ends, Revalidate or
// CutStream ends it, or the proxy closes.
func (p *Proxy) bridgeWebSocket(w http.ResponseWriter, r *http.Request, id string, a access, via, name string, up *websocket.Upgrader) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.OpenTimeout)
	defer cancel()
	d, err := p.allowedDevice(ctx, a.cred, id)
	if err == nil {
		err = checkPort(d, a.port)
	}
	if err != nil {
		p.refuseClient(w, err)
		return
	}
	a.device = d
	log := p.cfg.Logger.With("req", p.reqID.Add(1), "user", a.cred.User.Name, "device", d.ID, "port", a.port, "client", a.client)
	g, gctx, err := p.hold(a, via)
	if err != nil {
		log.Info(name+" refused", "err", err)
		p.refuseClient(w, err)
		return
	}
	defer p.grants.remove(g)
	stream, err := p.cfg.Dial(ctx, d.ID, a.port, a.client)
	if err != nil {
		log.Info(name+" refused", "err", err)
		p.refuseClient(w, err)
		return
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		stream.Close()
		log.Warn(name+" upgrade failed", "err", err) // gorilla has answered already
		return
	}
	p.splice(gctx, g, a, log, name, func(ctx context.Context) error {
		return spliceClientTool(ctx, ws, stream, g.n)
	})
}

// refuseClient answers a failure before the upgrade: as refuse, but an
// authentication failure is a server's 401, not a proxy's 407.
func (p *Proxy) refuseClient(w http.ResponseWriter, err error) {
	if errors.Is(err, errNeedAuth) {
		w.Header().Set("WWW-Authenticate", `Basic realm="reflector"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	p.refuse(w, err)
}

// sameOriginOrNone accepts a request without Origin, or whose Origin is
// the request's own: the same host and the scheme the request came by
// (https on TLS, else http). An origin is scheme, host and port (RFC 6454):
// a plain-http page of the device's name is another origin.
func sameOriginOrNone(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(origin)
	return err == nil && equalFoldASCII(u.Scheme, scheme) && equalFoldASCII(u.Host, r.Host)
}

// spliceWebTunnel copies between a client's WebSocket and a device stream
// until both directions have ended or ctx ends, then closes both. A close
// frame from the client half-closes the stream (its answer waits until the
// device has finished too); the stream's EOF sends our close frame. Each
// message toward the client is at most clientToolMessage bytes, never
// fragmented. It adds the bytes it copies to n as they pass, and returns
// the first error that was not a clean end.
func spliceClientTool(ctx context.Context, ws *websocket.Conn, stream net.Conn, n *traffic) error {
	stop := context.AfterFunc(ctx, func() {
		ws.NetConn().Close()
		stream.Close()
	})
	defer stop()
	// The client's close is its half-close: no automatic answer, which
	// would end our direction too. Our own close frame answers it once the
	// device's side has ended.
	ws.SetCloseHandler(func(int, string) error { return nil })
	var closeSent atomic.Bool
	back := make(chan error, 1)
	go func() { back <- wsToStream(ws, stream, &n.up, &closeSent) }()
	errDown := streamToWS(ws, stream, &n.down, &closeSent)
	errUp := <-back
	ws.NetConn().Close()
	stream.Close()
	return errors.Join(errUp, errDown)
}

// wsToStream writes the client's messages to the stream until the client's
// close frame, which half-closes the stream.
func wsToStream(ws *websocket.Conn, stream net.Conn, n *atomic.Int64, closeSent *atomic.Bool) error {
	bp := clientToolBuffers.Get().(*[]byte)
	defer clientToolBuffers.Put(bp)
	buf := *bp
	for {
		if closeSent.Load() {
			ws.SetReadDeadline(time.Now().Add(clientToolCloseGrace))
		}
		_, rd, err := ws.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if cw, ok := stream.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return nil
				}
				stream.Close()
				return nil
			}
			stream.Close()
			ws.NetConn().Close()
			if isClosedErr(err) {
				return nil
			}
			return err
		}
		for {
			m, rerr := rd.Read(buf)
			if m > 0 {
				// Counted before the write, as tunnel.JoinCounting does:
				// the device may answer before Write returns.
				n.Add(int64(m))
				w, werr := stream.Write(buf[:m])
				if w < m {
					n.Add(int64(w - m))
				}
				if werr != nil {
					stream.Close()
					ws.NetConn().Close()
					if isClosedErr(werr) {
						return nil
					}
					return werr
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				stream.Close()
				ws.NetConn().Close()
				if isClosedErr(rerr) {
					return nil
				}
				return rerr
			}
		}
	}
}

// streamToWS sends what the stream yields to the client in binary messages
// of at most clientToolMessage bytes, and a close frame at its EOF, adding
// the bytes it has sent to n.
func streamToWS(ws *websocket.Conn, stream net.Conn, n *atomic.Int64, closeSent *atomic.Bool) error {
	bp := clientToolBuffers.Get().(*[]byte)
	defer clientToolBuffers.Put(bp)
	buf := *bp
	for {
		m, rerr := stream.Read(buf)
		if m > 0 {
			if err := ws.WriteMessage(websocket.BinaryMessage, buf[:m]); err != nil {
				stream.Close()
				ws.NetConn().Close()
				if isClosedErr(err) {
					return nil
				}
				return err
			}
			n.Add(int64(m))
		}
		if rerr == io.EOF {
			closeSent.Store(true)
			ws.SetReadDeadline(time.Now().Add(clientToolCloseGrace))
			msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(10*time.Second)); err != nil {
				ws.NetConn().Close()
			}
			return nil
		}
		if rerr != nil {
			msg := websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "device stream failed")
			ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			stream.Close()
			ws.NetConn().Close()
			if isClosedErr(rerr) {
				return nil
			}
			return rerr
		}
	}
}

// isClosedErr reports an error that only says a connection was closed by
// us (the other direction, Revalidate or Close).
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
