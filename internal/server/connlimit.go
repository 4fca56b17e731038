package server

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// defaultConnsPerAddr is the default of Config.ConnsPerAddr. Connections
// that a handler has taken over — CONNECT splices, agents' tunnels,
// WebSockets, all opened after authentication — do not count, so a fleet
// behind one NAT address is not capped by it. What counts is requests and
// keep-alive connections, and handshakes not yet answered: a browser opens
// at most 6 connections per host name, so 256 is some 40 people behind one
// address each browsing a few device pages at once, or an agents' reconnect
// storm of 256 handshakes at a time (the rest are closed and retry with
// backoff). An attacker holds at most 256 goroutines and 256 × 64 KiB of
// header buffers per address (per /64 for IPv6, where one host has a whole
// /64 to choose from).
const defaultConnsPerAddr = 256

// connLimiter caps the connections each client address holds with the
// HTTP servers before a handler has taken them over: its Listener closes an
// address's new connections at once beyond the cap, and the servers'
// ConnState hook (connState) lets a connection go when it is closed or
// hijacked. The address is the socket's: the cap comes before any request
// is read, so X-Forwarded-For has nothing to say, and the addresses of
// trusted reverse proxies, which carry everybody's connections, are not
// capped (the proxy in front is where to limit those clients).
type connLimiter struct {
	max     int
	trusted []netip.Prefix
	logger  *slog.Logger

	mu     sync.Mutex
	byAddr map[netip.Prefix]*addrConns
	conns  map[net.Conn]netip.Prefix // counted connections, as Accept returned them
}

// addrConns is one address's count.
type addrConns struct {
	n      int
	logged time.Time // the last refusal logged: at most one a minute per address
}

// newConnLimiter returns a limiter of max connections per address, trusted
// networks excepted. A nil logger discards.
func newConnLimiter(max int, trusted []netip.Prefix, logger *slog.Logger) *connLimiter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &connLimiter{max: max, trusted: trusted, logger: logger,
		byAddr: map[netip.Prefix]*addrConns{}, conns: map[net.Conn]netip.Prefix{}}
}

// Listener wraps ln so that its connections are counted; a nil limiter
// returns ln.
func (l *connLimiter) Listener(ln net.Listener) net.Listener {
	if l == nil {
		return ln
	}
	return limitedListener{Listener: ln, limit: l}
}

type limitedListener struct {
	net.Listener
	limit *connLimiter
}

// Accept returns the next connection within its address's cap, closing
// those beyond it without a word: an answer would cost what the cap saves.
func (ll limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil || ll.limit.admit(c) {
			return c, err
		}
		c.Close()
	}
}

// admit counts c against its address, or reports false beyond the cap.
func (l *connLimiter) admit(c net.Conn) bool {
	a, ok := remoteAddr(c)
	if !ok || l.isTrusted(a) {
		return true // not counted
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	key, _ := a.Prefix(bits)
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byAddr[key]
	if e == nil {
		e = &addrConns{}
		l.byAddr[key] = e
	}
	if e.n >= l.max {
		if now := time.Now(); now.Sub(e.logged) >= time.Minute {
			e.logged = now
			l.logger.Warn("connection limit reached: closing the address's new connections at once",
				"client", key, "limit", l.max)
		}
		return false
	}
	e.n++
	l.conns[c] = key
	return true
}

// connState is the servers' ConnState hook: a closed or hijacked
// connection leaves the count.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key, ok := l.conns[c]
	if !ok {
		return
	}
	delete(l.conns, c)
	e := l.byAddr[key]
	e.n--
	if e.n == 0 {
		delete(l.byAddr, key)
	}
}

func (l *connLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr is c's peer address, unmapped and without a zone.
func remoteAddr(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}
