package auth

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrusted parses the --trusted-proxy values: CIDRs ("10.0.0.0/8",
// "2001:db8::/32") or single addresses, which stand for /32 or /128.
// Prefixes are masked ("10.1.2.3/8" is 10.0.0.0/8), and IPv4-mapped IPv6
// ones are turned into IPv4, as ClientResolver compares unmapped addresses.
func ParseTrustedProxies(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range cidrs {
		p, err := parseTrusted(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or CIDR", s)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil // PrefixFrom drops a zone
}

// ClientResolver finds client addresses. The zero ClientResolver trusts no proxy and
// returns the socket's address.
type ClientResolver struct {
	// Trusted are the networks of reverse proxies whose X-Forwarded-For
	// is believed.
	Trusted []netip.Prefix
}

// Addr returns the client address of req, unmapped and without a zone:
//
//   - the IP of req.RemoteAddr, when it is not in a trusted network;
//   - otherwise the rightmost X-Forwarded-For entry, over all its header
//     lines, that is not in a trusted network — each trusted hop vouches
//     for the one before it, and the first untrusted one is where the
//     chain of trust ends;
//   - the IP of req.RemoteAddr again when every entry is trusted, the
//     header is absent, or the walk meets an entry that is not an IP
//     address (empty, "unknown", garbage), rather than believe anything
//     past it.
//
// A RemoteAddr that is not host:port with a numeric host gives the invalid
// Addr.
func (r ClientResolver) Addr(req *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	socket := clean(ap.Addr())
	if !r.trusted(socket) {
		return socket
	}
	lines := req.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			j := strings.LastIndexByte(line, ',')
			a, ok := parseHop(line[j+1:])
			if !ok {
				return socket
			}
			if !r.trusted(a) {
				return a
			}
			if j < 0 {
				break
			}
			line = line[:j]
		}
	}
	return socket
}

// trusted reports whether a is in a trusted network.
func (r ClientResolver) trusted(a netip.Addr) bool {
	for _, p := range r.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one X-Forwarded-For entry: an IP address, optionally
// with a port as some proxies add ("192.0.2.1:4711", "[2001:db8::1]:4711")
// or in brackets ("[2001:db8::1]").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return clean(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return clean(ap.Addr()), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return clean(a), true
		}
	}
	return netip.Addr{}, false
}

// clean unmaps a and drops its zone, so that one client has one address
// and trusted networks, which have no zones, can contain it.
func clean(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
