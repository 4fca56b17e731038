package tunnel

import (
	"context"
	"net/http"
	"net/netip"
)

// The client address of a request is resolved once, by the server's router
// (behind a trusted reverse proxy it is the forwarded address, not the
// proxy's), and read by every handler with ClientAddr: the proxy, the admin
// host, the enrolment endpoint and both agent endpoints throttle, log and
// audit by the same address. Hub.Dial takes it as a parameter.

type clientAddrKey struct{}

// WithClientAddr returns r carrying addr as the address of its client. The
// router calls it once per request, before any handler.
func WithClientAddr(r *http.Request, addr netip.Addr) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, addr))
}

// ClientAddr is the address of the client that sent r: the one the router
// resolved, or the socket's peer for a request that did not pass a router
// (a handler under test). It is the invalid Addr when neither is known.
func ClientAddr(r *http.Request) netip.Addr {
	if a, ok := r.Context().Value(clientAddrKey{}).(netip.Addr); ok {
		return a
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ClientText is the client's address for logs and device status: the
// socket's host:port, which tells two connections from one address apart,
// or, when the router resolved another address (behind a trusted reverse
// proxy), that address alone.
func ClientText(r *http.Request) string {
	client := ClientAddr(r)
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && ap.Addr().Unmap() == client {
		return r.RemoteAddr
	}
	return addrText(client)
}

// addrText is a for logs and the wire: "" when it is not valid.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
