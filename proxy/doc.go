// Package proxy is the reflector's HTTP front for users: an authenticated
// HTTP proxy whose only destinations are device ports, the reverse proxy for
// device hosts, and the WebSocket of macchina.io's client tools. CONNECT
// device[.domain]:port becomes a stream to that port, spliced byte for byte
// (ServeConnect, connect.go); absolute-form requests (GET
// http://device.domain/...) are forwarded to the device's web server through
// goproxy (ServeAbsolute, absolute.go); a request whose Host is
// <device>.<domain> is forwarded there by httputil.ReverseProxy once
// Config.DeviceAuth has said who sent it (ServeDevice, subdomain.go); a
// client tool's upgrade on a device host becomes a stream to the port it
// names (ServeClientTool, client_tool.go). The server's router decides which
// of these serves a request. Every request is authenticated, resolved to a
// registered device and authorised before anything is dialled; any other
// address is refused, so the reflector is never an open proxy. Every open
// stream and forwarded request is a grant that Revalidate ends when its
// credential no longer reaches the device, and is audited when it ends;
// OpenStream (webssh.go) gives a part of the reflector that speaks to a
// device itself (the browser's SSH terminal) a stream held the same way.
package proxy
