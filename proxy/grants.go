package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// grant is an open CONNECT stream, client-tool stream or forwarded HTTP
// request: access a credential was given to a device, kept so that
// Revalidate can end it when the credential no longer reaches the device —
// a token revoked, a user removed, a device moved to another group.
type grant struct {
	cred   store.Credential
	device string
	cancel context.CancelFunc // ends the stream; safe to call more than once
	done   chan struct{}      // closed by cancel, when the owner must tell (forwarded requests)
}

// grants is the set of open grants. It is touched once when a stream opens
// and once when it closes, never per byte.
type grants struct {
	mu  sync.Mutex
	set map[*grant]struct{}
}

func (s *grants) add(g *grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[*grant]struct{})
	}
	s.set[g] = struct{}{}
}

func (s *grants) remove(g *grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.set, g)
}

func (s *grants) snapshot() []*grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*grant, 0, len(s.set))
	for g := range s.set {
		out = append(out, g)
	}
	return out
}

// Open returns the number of open CONNECT streams, client-tool streams and
// forwarded HTTP requests (absolute-form and device subdomain).
func (p *Proxy) Open() int {
	p.grants.mu.Lock()
	defer p.grants.mu.Unlock()
	return len(p.grants.set)
}

// Revalidate checks every open stream and request again with Config.Recheck
// and ends those whose credential may no longer reach their device. It
// returns how many it ended. The server calls it after admin changes and
// periodically, so that expired tokens end too.
func (p *Proxy) Revalidate() int {
	if p.cfg.Recheck == nil {
		return 0
	}
	ended := 0
	for _, g := range p.grants.snapshot() {
		if !p.cfg.Recheck(g.cred, g.device) {
			g.cancel()
			ended++
		}
	}
	if ended > 0 {
		p.cfg.Logger.Info("access revoked: streams closed", "count", ended)
	}
	return ended
}

// splice runs join, which copies between a user's connection and a device
// stream until ctx ends or both directions are done, as a grant of access
// a: Revalidate can end it, Close ends it and waits for it. When it ends,
// the stream is logged and audited with its bytes each way; via names the
// path in the audit reason ("" for CONNECT, "webtunnel" for a client tool).
func (p *Proxy) splice(a access, log *slog.Logger, via string, join func(ctx context.Context) (up, down int64, err error)) {
	p.wg.Add(1)
	defer p.wg.Done()
	start := time.Now()
	ctx, end := context.WithCancel(p.ctx)
	g := &grant{cred: a.cred, device: a.device.ID, cancel: end}
	p.grants.add(g)
	up, down, err := join(ctx)
	p.grants.remove(g)
	revoked := ctx.Err() != nil && p.ctx.Err() == nil
	end()
	d := time.Since(start)
	log.LogAttrs(context.Background(), slog.LevelInfo, "stream closed",
		slog.Int64("bytes_up", up), slog.Int64("bytes_down", down),
		slog.Duration("duration", d), slog.Any("err", err))
	ev := a.event(store.AuditStream)
	ev.OK, ev.BytesUp, ev.BytesDown, ev.Duration = true, up, down, d
	switch {
	case revoked:
		ev.Reason = "closed: access revoked"
	case err != nil:
		ev.Reason = err.Error()
	}
	switch {
	case via == "":
	case ev.Reason == "":
		ev.Reason = via
	default:
		ev.Reason = via + ": " + ev.Reason
	}
	p.cfg.Audit(ev)
}
