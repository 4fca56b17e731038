package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The client side of macchina.io REMOTE's WebTunnel (remote-client,
// remote-ssh, remote-scp; ../shared/compat/README.md has a captured
// request): a WebSocket upgrade, POST or GET, on a device's host
// (<id>.<Domain>), asking for one port of that device. The WebSocket then
// carries the stream's raw bytes in binary messages, no channel header.
const (
	// WTClientSubprotocol marks a client tool's upgrade.
	WTClientSubprotocol = "com.appinf.webtunnel.client/1.0"
	// HeaderWTRemotePort names the device port the client wants.
	HeaderWTRemotePort = "X-WebTunnel-RemotePort"

	// wtClientMessage bounds a message toward the client: the tools read
	// frames into a buffer of this size and take a larger one for an error.
	wtClientMessage = 2048
	// wtClientCloseGrace is how long a client may stay silent after our
	// close frame before the connection is dropped; data it still sends
	// (its half of a half-closed stream) extends it.
	wtClientCloseGrace = 30 * time.Second
)

var wtClientUpgrader = websocket.Upgrader{
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   0,    // reuse the hijacked connection's reader
	WriteBufferSize:  4096, // one 2,048-byte message and its header: one write
	Subprotocols:     []string{WTClientSubprotocol},
	// The tools send no Origin. A browser page could not add
	// X-WebTunnel-RemotePort, which is required, but a foreign Origin is
	// refused anyway.
	CheckOrigin: sameOriginOrNone,
}

// wtClientBuffers are the buffers stream bytes go through to the client,
// one message's worth each.
var wtClientBuffers = sync.Pool{New: func() any {
	b := make([]byte, wtClientMessage)
	return &b
}}

// IsWebTunnelClient reports whether r is a client tool's WebTunnel upgrade:
// what server/server.go routes to Proxy.ServeWebTunnelClient.
func IsWebTunnelClient(r *http.Request) bool {
	return slices.Contains(websocket.Subprotocols(r), WTClientSubprotocol)
}

// ServeWebTunnelClient serves a client tool's upgrade, in the order of
// serveConnect: check the request, authenticate (Authorization: Basic
// user:password-or-token, or Bearer token), authorise, open the stream to
// the device and only then upgrade, so that every failure is an ordinary
// HTTP status. It blocks for the stream's lifetime, which is tracked for
// Revalidate and audited as a stream when it ends.
func (p *Proxy) ServeWebTunnelClient(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) || !IsWebTunnelClient(r) {
		http.Error(w, "webtunnel client endpoint: WebSocket upgrade with "+WTClientSubprotocol+" required", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "webtunnel client endpoint: POST or GET", http.StatusMethodNotAllowed)
		return
	}
	id, ok := p.hostDevice(r.Host)
	if !ok {
		http.Error(w, "not found: not a device address", http.StatusNotFound)
		return
	}
	n, err := strconv.ParseUint(strings.TrimSpace(r.Header.Get(HeaderWTRemotePort)), 10, 16)
	if err != nil || n == 0 {
		http.Error(w, HeaderWTRemotePort+": a port 1-65535 required", http.StatusBadRequest)
		return
	}
	port := uint16(n)
	client := p.cfg.ClientAddr(r)
	cred, err := p.authenticate(r.Header.Get("Authorization"), client)
	if err != nil {
		p.refuseClient(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.OpenTimeout)
	defer cancel()
	d, err := p.allowedDevice(ctx, cred, id)
	if err == nil {
		err = checkPort(d, port)
	}
	if err != nil {
		p.refuseClient(w, err)
		return
	}
	a := access{cred: cred, client: client, device: d, port: port}
	reqID := p.reqID.Add(1)
	log := p.cfg.Logger.With("req", reqID, "user", cred.User.Name, "device", d.ID, "port", port, "client", client)
	stream, err := p.cfg.Dial(tunnel.WithClientAddr(ctx, r.RemoteAddr), d.ID, port)
	if err != nil {
		log.Info("webtunnel client refused", "err", err)
		p.refuseClient(w, err)
		return
	}
	// gorilla's Upgrader refuses any method but GET; the tools upgrade
	// with POST (and no body), checked above (as webtunnel.Server).
	r.Method = http.MethodGet
	ws, err := wtClientUpgrader.Upgrade(w, r, nil)
	if err != nil {
		stream.Close()
		log.Warn("webtunnel client upgrade failed", "err", err) // gorilla has answered already
		return
	}
	p.wg.Add(1)
	defer p.wg.Done()
	start := time.Now()
	sctx, end := context.WithCancel(p.ctx)
	sess := &session{cred: cred, device: d.ID, cancel: end}
	p.sessions.add(sess)
	up, down, err := spliceWebTunnel(sctx, ws, stream)
	p.sessions.remove(sess)
	revoked := sctx.Err() != nil && p.ctx.Err() == nil
	end()
	dur := time.Since(start)
	log.LogAttrs(context.Background(), slog.LevelInfo, "webtunnel client closed",
		slog.Int64("bytes_up", up), slog.Int64("bytes_down", down),
		slog.Duration("duration", dur), slog.Any("err", err))
	ev := a.event(store.AuditStream)
	ev.OK, ev.BytesUp, ev.BytesDown, ev.Duration = true, up, down, dur
	switch {
	case revoked:
		ev.Reason = "webtunnel: closed: access revoked"
	case err != nil:
		ev.Reason = "webtunnel: " + err.Error()
	default:
		ev.Reason = "webtunnel"
	}
	p.cfg.Audit(ev)
}

// hostDevice returns the device a Host header names: <id>.<Domain>, with
// any port. The admin host, IP addresses and other names are not devices.
func (p *Proxy) hostDevice(hostport string) (string, bool) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	id, ok := strings.CutSuffix(host, "."+p.cfg.Domain)
	if !ok || !tunnel.ValidDeviceID(id) || net.ParseIP(host) != nil {
		return "", false
	}
	return id, true
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

// sameOriginOrNone accepts a request without Origin, or whose Origin's host
// is the request's Host.
func sameOriginOrNone(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// spliceWebTunnel copies between a client's WebSocket and a device stream
// until both directions have ended or ctx ends, then closes both. A close
// frame from the client half-closes the stream (its answer waits until the
// device has finished too); the stream's EOF sends our close frame. Each
// message toward the client is at most wtClientMessage bytes, never
// fragmented. It returns the bytes copied to the device and from it, and the
// first error that was not a clean end.
func spliceWebTunnel(ctx context.Context, ws *websocket.Conn, stream net.Conn) (up, down int64, err error) {
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
	var upN atomic.Int64
	go func() { back <- wsToStream(ws, stream, &upN, &closeSent) }()
	down, errDown := streamToWS(ws, stream, &closeSent)
	errUp := <-back
	ws.NetConn().Close()
	stream.Close()
	return upN.Load(), down, errors.Join(errUp, errDown)
}

// wsToStream writes the client's messages to the stream until the client's
// close frame, which half-closes the stream.
func wsToStream(ws *websocket.Conn, stream net.Conn, n *atomic.Int64, closeSent *atomic.Bool) error {
	bp := wtClientBuffers.Get().(*[]byte)
	defer wtClientBuffers.Put(bp)
	buf := *bp
	for {
		if closeSent.Load() {
			ws.SetReadDeadline(time.Now().Add(wtClientCloseGrace))
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
				w, werr := stream.Write(buf[:m])
				n.Add(int64(w))
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
// of at most wtClientMessage bytes, and a close frame at its EOF.
func streamToWS(ws *websocket.Conn, stream net.Conn, closeSent *atomic.Bool) (int64, error) {
	bp := wtClientBuffers.Get().(*[]byte)
	defer wtClientBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		m, rerr := stream.Read(buf)
		if m > 0 {
			if err := ws.WriteMessage(websocket.BinaryMessage, buf[:m]); err != nil {
				stream.Close()
				ws.NetConn().Close()
				if isClosedErr(err) {
					return total, nil
				}
				return total, err
			}
			total += int64(m)
		}
		if rerr == io.EOF {
			closeSent.Store(true)
			ws.SetReadDeadline(time.Now().Add(wtClientCloseGrace))
			msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(10*time.Second)); err != nil {
				ws.NetConn().Close()
			}
			return total, nil
		}
		if rerr != nil {
			msg := websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "device stream failed")
			ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			stream.Close()
			ws.NetConn().Close()
			if isClosedErr(rerr) {
				return total, nil
			}
			return total, rerr
		}
	}
}

// isClosedErr reports an error that only says a connection was closed by
// us (the other direction, Revalidate or Close).
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
