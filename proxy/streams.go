package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// The paths by which a stream or request reaches a device, as Stream.Via
// names them.
const (
	ViaConnect    = "connect"     // a CONNECT stream (connect.go)
	ViaAbsolute   = "absolute"    // an absolute-form request, upgrades included (absolute.go)
	ViaSubdomain  = "subdomain"   // a request on a device host (subdomain.go)
	ViaClientTool = "client-tool" // a macchina.io client tool's stream (client_tool.go)
	ViaWebsockify = "websockify"  // a browser's WebSocket bridged to a stream, noVNC's (websockify.go)
)

// Stream is an open stream or forwarded request through the proxy, as the
// API lists it. A stream still being opened is listed too: it holds one of
// its user's MaxUserStreams already.
type Stream struct {
	ID      string     // unique while the process runs, opaque: 16 hex digits
	User    string     //
	TokenID string     // "" unless a token opened it
	Device  string     //
	Port    uint16     // the device port
	Client  netip.Addr // the user's address
	Via     string     // ViaConnect, ViaAbsolute, ViaSubdomain, ViaClientTool, ViaWebsockify or ViaWebSSH (webssh.go)
	Since   time.Time  // when it was authorised, before the device was dialled
	// Bytes so far, to the device and from the device, counted as they
	// pass, not only at close. A forwarded request counts its body and its
	// response's body (and a switched protocol's bytes), not headers.
	BytesUp, BytesDown int64
}

// Streams returns the open streams and forwarded requests of device, or of
// every device for "", oldest first.
func (p *Proxy) Streams(device string) []Stream {
	gs := p.grants.snapshot(device)
	out := make([]Stream, 0, len(gs))
	for _, g := range gs {
		if g.ended.Load() != 0 {
			continue // cut or revoked: closing, no longer open
		}
		out = append(out, g.stream())
	}
	return out
}

// CutStream ends the open stream or request with ID id on device, as
// Revalidate ends a revoked one but audited as "closed: cut by an
// administrator", and returns it as it was. It reports false when device
// has no open stream of that ID, or only one already ended (cut or
// revoked) that is closing. It does not wait for the stream to close;
// the operations layer audits who cut it.
func (p *Proxy) CutStream(device, id string) (Stream, bool) {
	n, ok := parseStreamID(id)
	if !ok {
		return Stream{}, false
	}
	g, ok := p.grants.lookup(device, n)
	if !ok || !g.end(endCut) {
		// None, or one already cut or revoked, which is closing: a
		// second DELETE is not a second cut.
		return Stream{}, false
	}
	p.cfg.Logger.Info("stream cut", "device", g.device, "user", g.cred.User.Name, "stream", id)
	return g.stream(), true
}

func (g *grant) stream() Stream {
	return Stream{
		ID: formatStreamID(g.id), User: g.cred.User.Name, TokenID: g.cred.TokenID,
		Device: g.device, Port: g.port, Client: g.client, Via: g.via, Since: g.since,
		BytesUp: g.n.up.Load(), BytesDown: g.n.down.Load(),
	}
}

// streamID turns a grant's sequence number into its ID with a bijection of
// the 64-bit numbers (the splitmix64 finaliser) of the number plus key, a
// random number drawn when the proxy starts: IDs are unique while the
// process runs, tell nothing of how many streams came before, and an ID
// listed before a restart does not name a stream after it (a stale DELETE
// cuts nothing).
func streamID(seq, key uint64) uint64 {
	z := seq + key
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func formatStreamID(id uint64) string { return fmt.Sprintf("%016x", id) }

// parseStreamID reads an ID as formatStreamID writes it, and nothing else:
// an ID that prints differently names no stream.
func parseStreamID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 16, 64)
	if err != nil || formatStreamID(n) != s {
		return 0, false
	}
	return n, true
}
