package proxy

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// grant is an open CONNECT stream, client-tool stream or forwarded HTTP
// request: access a credential was given to a device, kept so that
// Revalidate can end it when the credential no longer reaches the device —
// a token revoked, a user removed, a device moved to another group — and
// so that Streams can list it and CutStream end it.
type grant struct {
	cred   store.Credential
	device string
	port   uint16
	client netip.Addr
	via    string             // ViaConnect, ViaAbsolute, ViaSubdomain, ViaClientTool, ViaWebsockify or ViaWebSSH (webssh.go)
	n      *traffic           // bytes so far, added by the copiers
	cancel context.CancelFunc // ends the stream; safe to call more than once
	// ended says why the grant was ended early (endRevoked, endCut), set
	// once by end before cancel; 0 while it was not.
	ended atomic.Uint32

	// Set by addWithin, under the set's lock, and not changed after.
	seq   uint64 // order of registration
	id    uint64 // streamID(seq)
	since time.Time
}

// Why a grant was ended before its stream closed by itself.
const (
	endRevoked = 1 + iota // Revalidate: the credential no longer reaches the device
	endCut                // CutStream: an administrator cut it
)

// end ends g for the reason why, unless it was ended for another reason
// first: the first reason is the one audited. It reports whether this call
// was the first.
func (g *grant) end(why uint32) bool {
	first := g.ended.CompareAndSwap(0, why)
	g.cancel()
	return first
}

// closedReason is what the audit event says of a grant ended early, "" for
// one that was not.
func (g *grant) closedReason() string {
	switch g.ended.Load() {
	case endRevoked:
		return "closed: access revoked"
	case endCut:
		return "closed: cut by an administrator"
	}
	return ""
}

// traffic counts a stream's bytes each way while it runs: its copiers add
// to it, one atomic add per chunk, and Streams reads it.
type traffic struct {
	up, down atomic.Int64 // to the device, from the device
}

// newGrant is the grant of access a by path via, counted in n and ended by
// cancel.
func newGrant(a access, via string, n *traffic, cancel context.CancelFunc) *grant {
	return &grant{cred: a.cred, device: a.device.ID, port: a.port, client: a.client, via: via, n: n, cancel: cancel}
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

// grants is the set of open grants by ID, with their count per user and
// device. It is touched once when a stream opens and once when it closes,
// never per byte.
type grants struct {
	mu    sync.Mutex
	set   map[uint64]*grant // by id
	open  map[userDevice]int
	byVia map[string]*ViaMetrics
	next  uint64 // the next grant's seq
	key   uint64 // streamID's key, drawn with the set
}

// ViaMetrics counts the streams of one path (Via*): those open now and all
// granted since the start.
type ViaMetrics struct {
	Via     string
	Open    int64
	Granted uint64
}

type userDevice struct{ user, device string }

func (g *grant) key() userDevice { return userDevice{g.cred.User.Name, g.device} }

// addWithin registers g unless its user has limit grants at its device
// already (no limit when negative); it reports whether it did. It gives g
// its ID and its start.
func (s *grants) addWithin(g *grant, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[uint64]*grant)
		s.open = make(map[userDevice]int)
		s.byVia = make(map[string]*ViaMetrics)
		s.key = rand.Uint64()
	}
	k := g.key()
	if limit >= 0 && s.open[k] >= limit {
		return false
	}
	g.seq = s.next
	s.next++
	g.id = streamID(g.seq, s.key)
	g.since = time.Now()
	s.set[g.id] = g
	s.open[k]++
	v := s.byVia[g.via]
	if v == nil {
		v = &ViaMetrics{Via: g.via}
		s.byVia[g.via] = v
	}
	v.Open++
	v.Granted++
	return true
}

// remove unregisters g; removing it again, or a grant never added, does
// nothing.
func (s *grants) remove(g *grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set[g.id] != g {
		return
	}
	delete(s.set, g.id)
	k := g.key()
	if s.open[k]--; s.open[k] == 0 {
		delete(s.open, k)
	}
	s.byVia[g.via].Open--
}

// ViaMetrics returns the stream counts of each path that has had a stream,
// by name.
func (p *Proxy) ViaMetrics() []ViaMetrics {
	p.grants.mu.Lock()
	out := make([]ViaMetrics, 0, len(p.grants.byVia))
	for _, v := range p.grants.byVia {
		out = append(out, *v)
	}
	p.grants.mu.Unlock()
	slices.SortFunc(out, func(a, b ViaMetrics) int { return cmp.Compare(a.Via, b.Via) })
	return out
}

// snapshot returns the open grants of device ("" for all), oldest first.
func (s *grants) snapshot(device string) []*grant {
	s.mu.Lock()
	out := make([]*grant, 0, len(s.set))
	for _, g := range s.set {
		if device == "" || g.device == device {
			out = append(out, g)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *grant) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// lookup returns the open grant of device with ID id.
func (s *grants) lookup(device string, id uint64) (*grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.set[id]
	if !ok || g.device != device {
		return nil, false
	}
	return g, true
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
	for _, g := range p.grants.snapshot("") {
		if !p.cfg.Recheck(g.cred, g.device) {
			g.end(endRevoked)
			ended++
		}
	}
	if ended > 0 {
		p.cfg.Logger.Info("access revoked: streams closed", "count", ended)
	}
	return ended
}

// hold is the grant of access a by path via for a stream about to be
// opened, taken before the open so that the stream counts toward
// MaxUserStreams from the start; an error wraps ErrTooManyStreams. Its
// context ends when Revalidate or CutStream ends the grant or the proxy
// closes. The caller defers p.grants.remove(g) for when the stream is
// never spliced.
func (p *Proxy) hold(a access, via string) (*grant, context.Context, error) {
	ctx, end := context.WithCancel(p.ctx)
	g := newGrant(a, via, new(traffic), end)
	if !p.grants.addWithin(g, MaxUserStreams) {
		end()
		return nil, nil, fmt.Errorf("user %s, device %s: %w", a.cred.User.Name, a.device.ID, ErrTooManyStreams)
	}
	return g, ctx, nil
}

// splice runs join, which copies between a user's connection and a device
// stream, counting into g.n, until ctx ends or both directions are done,
// under grant g of access a and its context ctx (hold): Revalidate and
// CutStream can end it, Close ends it and waits for it. When it ends, the
// grant is removed and the stream is logged and audited with its bytes
// each way; label names the path in the audit reason ("" for CONNECT,
// "webtunnel" for a client tool).
func (p *Proxy) splice(ctx context.Context, g *grant, a access, log *slog.Logger, label string, join func(ctx context.Context) error) {
	if p.enter() {
		defer p.wg.Done()
	}
	start := time.Now()
	err := join(ctx)
	p.grants.remove(g)
	g.cancel()
	up, down := g.n.up.Load(), g.n.down.Load()
	d := time.Since(start)
	log.LogAttrs(context.Background(), slog.LevelInfo, "stream closed",
		slog.Int64("bytes_up", up), slog.Int64("bytes_down", down),
		slog.Duration("duration", d), slog.Any("err", err))
	ev := a.event(store.AuditStream)
	ev.OK, ev.BytesUp, ev.BytesDown, ev.Duration = true, up, down, d
	ev.Reason = g.closedReason()
	if ev.Reason == "" && err != nil {
		ev.Reason = err.Error()
	}
	switch {
	case label == "":
	case ev.Reason == "":
		ev.Reason = label
	default:
		ev.Reason = label + ": " + ev.Reason
	}
	p.cfg.Audit(ev)
}
