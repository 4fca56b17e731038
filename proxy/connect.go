package proxy

import (
	"context"
	"net/http"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

const established = "HTTP/1.1 200 Connection established\r\n\r\n"

// ServeConnect handles CONNECT device:port in the fixed order of STYLE.md:
// authenticate, resolve and authorise, take one of the user's
// MaxUserStreams at the device, open the stream and wait for the agent's
// answer, and only then hijack, answer 200 and splice. Every failure before
// the hijack is an ordinary HTTP response.
func (p *Proxy) ServeConnect(w http.ResponseWriter, r *http.Request) {
	id := p.reqID.Add(1)
	// The open must survive the client's half-close before our 200 (net/http
	// cancels r.Context() when it reads EOF), so it runs on its own context.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.OpenTimeout)
	defer cancel()
	a, err := p.authorize(ctx, r, r.Host)
	if err != nil {
		p.refuse(w, err)
		return
	}
	log := p.cfg.Logger.With("req", id, "user", a.cred.User.Name, "device", a.device.ID, "port", a.port, "client", a.client)
	g, gctx, err := p.hold(a, ViaConnect)
	if err != nil {
		log.Info("connect refused", "err", err)
		p.refuse(w, err)
		return
	}
	defer p.grants.remove(g)
	stream, err := p.cfg.Dial(ctx, a.device.ID, a.port, a.client)
	if err != nil {
		log.Info("connect refused", "err", err)
		p.refuse(w, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		stream.Close()
		log.Error("hijack", "err", err)
		http.Error(w, "cannot hijack connection", http.StatusInternalServerError)
		return
	}
	if _, err := conn.Write([]byte(established)); err != nil {
		conn.Close()
		stream.Close()
		return
	}
	// Bytes the client sent right behind its request (early data) are in the
	// server's reader already: they go first, then the raw connection.
	if early := brw.Reader.Buffered(); early > 0 {
		b, _ := brw.Reader.Peek(early)
		if _, err := stream.Write(b); err != nil {
			conn.Close()
			stream.Close()
			return
		}
		g.n.up.Add(int64(early))
	}
	// The splice runs on this handler's goroutine; Close waits for it.
	p.splice(gctx, g, a, log, "", func(ctx context.Context) error {
		return tunnel.JoinCounting(ctx, conn, stream, &g.n.up, &g.n.down)
	})
}

// event is an audit event for this access, without outcome.
func (a access) event(kind string) store.AuditEvent {
	ev := store.AuditEvent{Kind: kind, User: a.cred.User.Name, Token: a.cred.TokenID, Device: a.device.ID, Port: a.port}
	if a.client.IsValid() {
		ev.Client = a.client.String()
	}
	return ev
}
