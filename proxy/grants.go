package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
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

// MaxUserStreams caps the CONNECT and client-tool streams and forwarded
// HTTP requests (absolute-form, device hosts) one user may have open to one
// device at once; the next is refused with ErrTooManyStreams (429), so one
// user cannot take all of a device's tunnel.MaxDeviceStreams. A request
// counts because one whose answer the client does not read holds a device
// stream as a CONNECT does.
//
// 15 windows (15 MiB) stay below the 16 MiB session buffer of agents of
// older releases (tunnel.LegacySessionBuffer): one user alone cannot stall
// such an agent's tunnel by sending into a device port that reads nothing.
const MaxUserStreams = tunnel.LegacySessionBuffer/tunnel.StreamWindow - 1

// grants is the set of open grants, with their count per user and device.
// It is touched once when a stream opens and once when it closes, never
// per byte.
type grants struct {
	mu   sync.Mutex
	set  map[*grant]struct{}
	open map[userDevice]int
}

type userDevice struct{ user, device string }

func (g *grant) key() userDevice { return userDevice{g.cred.User.Name, g.device} }

// addWithin registers g unless its user has limit grants at its device
// already (no limit when negative); it reports whether it did.
func (s *grants) addWithin(g *grant, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[*grant]struct{})
		s.open = make(map[userDevice]int)
	}
	k := g.key()
	if limit >= 0 && s.open[k] >= limit {
		return false
	}
	s.set[g] = struct{}{}
	s.open[k]++
	return true
}

// remove unregisters g; removing it again does nothing.
func (s *grants) remove(g *grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[g]; !ok {
		return
	}
	delete(s.set, g)
	k := g.key()
	if s.open[k]--; s.open[k] == 0 {
		delete(s.open, k)
	}
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
// forwarded HTTP requests (absolute-form and device subdomain), streams
// still being opened included.
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

// hold is the grant of access a for a stream about to be opened, taken
// before the open so that the stream counts toward MaxUserStreams from the
// start; an error wraps ErrTooManyStreams. Its context ends when
// Revalidate ends the grant or the proxy closes. The caller defers
// p.grants.remove(g) for when the stream is never spliced.
func (p *Proxy) hold(a access) (*grant, context.Context, error) {
	ctx, end := context.WithCancel(p.ctx)
	g := &grant{cred: a.cred, device: a.device.ID, cancel: end}
	if !p.grants.addWithin(g, MaxUserStreams) {
		end()
		return nil, nil, fmt.Errorf("user %s, device %s: %w", a.cred.User.Name, a.device.ID, ErrTooManyStreams)
	}
	return g, ctx, nil
}

// splice runs join, which copies between a user's connection and a device
// stream until ctx ends or both directions are done, under grant g of
// access a and its context ctx (hold): Revalidate can end it, Close ends it
// and waits for it. When it ends, the grant is removed and the stream is
// logged and audited with its bytes each way; via names the path in the
// audit reason ("" for CONNECT, "webtunnel" for a client tool).
func (p *Proxy) splice(ctx context.Context, g *grant, a access, log *slog.Logger, via string, join func(ctx context.Context) (up, down int64, err error)) {
	if p.enter() {
		defer p.wg.Done()
	}
	start := time.Now()
	up, down, err := join(ctx)
	p.grants.remove(g)
	revoked := ctx.Err() != nil && p.ctx.Err() == nil
	g.cancel()
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
