// Package proxy is the reflector's HTTP front for users: an authenticated
// HTTP proxy whose only destinations are device ports, and the reverse proxy
// for device subdomains. CONNECT device[.domain]:port becomes a stream to
// that port, spliced byte for byte (connect.go); absolute-form requests (GET
// http://device.domain/...) are forwarded to the device's web server through
// goproxy (absolute.go); a request whose Host is <device>.<domain> is
// forwarded there by httputil.ReverseProxy once Config.DeviceAuth has said
// who sent it (subdomain.go). Every request is authenticated, resolved to a
// registered device and authorised before anything is dialled; any other
// address is refused, so the reflector is never an open proxy. Requests that
// are not for the proxy or a device go to Config.Next (the admin UI and the
// tunnel endpoint).
package proxy
