package server

import (
	"net/http"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

// route names the handler that serves a request.
type route int

const (
	routeConnect    route = iota // CONNECT device:port: a stream to the device (proxy)
	routeAbsolute                // GET http://device/...: forwarded to the device's web server (proxy)
	routeAgent                   // a WebTunnelAgent's upgrade, on any host and path (webtunnel)
	routeClientTool              // a macchina.io client tool's upgrade on a device host (proxy)
	routeWebsockify              // noVNC's WebSocket bridge on a device host, at /.reflector/websockify or /my-devices/websockify, and below /.reflector/novnc/ for its app (proxy)
	routeNoVNC                   // noVNC's app on a device host, under /.reflector/novnc/ (admin)
	routeDevice                  // anything else on a device host: the device's web UI (proxy)
	routeTunnel                  // our agent's upgrade at /tunnel/v1 (tunnel)
	routeEnroll                  // an agent's enrolment at /enroll/v1 (enroll)
	routeHealth                  // /healthz, /readyz, /my-devices/health.json on the admin host (health.go)
	routeAPI                     // the REST API /api/v1 and macchina.io's /my-devices/api/{devices,provision} on the admin host (api)
	routeAdmin                   // everything else: the admin host (admin)
	routeNotFound                // nothing serves it: 404
)

var routeNames = [...]string{"connect", "absolute", "agent", "client-tool", "websockify", "novnc", "device", "tunnel", "enroll", "health", "api", "admin", "not-found"}

func (r route) String() string { return routeNames[r] }

// router is the one place that decides, per request, which handler serves
// it (DESIGN.md, "Listeners": one port for everything, dispatched by request
// form and Host). It also resolves the client's address, once, for every
// handler behind it (tunnel.ClientAddr).
type router struct {
	clients auth.ClientResolver
	proxy   *proxy.Proxy
	// proxyOnly serves the plain proxy listener (--proxy-listen): CONNECT
	// and absolute-form requests, nothing else.
	proxyOnly bool

	tunnel    http.Handler // *tunnel.Server
	webTunnel http.Handler // *webtunnel.Server
	enroll    http.Handler // *enroll.Handler
	admin     http.Handler // *admin.Admin
	health    http.Handler // *health
	api       http.Handler // *api.API
	// novnc serves noVNC's app on a device host (admin.Admin.ServeNoVNC).
	novnc func(w http.ResponseWriter, r *http.Request, device string)

	// admit bounds the handshakes in progress on both agent endpoints;
	// nil admits all.
	admit *admission
}

// route decides, top to bottom; device is the device a device-host route is
// for. The order matters: a proxy request may name any host; a
// WebTunnelAgent upgrades on any path of any host; a client tool dials its
// device's host, and noVNC its bridge there, whose other requests are the device's web UI; the fixed
// paths of our agent and the health checks are on the admin host.
func (rt *router) route(r *http.Request) (_ route, device string) {
	switch {
	case r.Method == http.MethodConnect:
		return routeConnect, ""
	case r.URL.IsAbs():
		return routeAbsolute, ""
	case rt.proxyOnly:
		return routeNotFound, ""
	case webtunnel.IsAgentUpgrade(r):
		return routeAgent, ""
	}
	device, onDevice := rt.proxy.DeviceHost(r.Host)
	switch {
	case proxy.IsClientToolUpgrade(r) && onDevice:
		return routeClientTool, device
	case proxy.IsClientToolUpgrade(r):
		return routeNotFound, ""
	case onDevice && proxy.IsWebsockify(r):
		return routeWebsockify, device
	case onDevice && admin.IsNoVNC(r):
		return routeNoVNC, device
	case onDevice:
		return routeDevice, device
	case r.URL.Path == tunnel.Path:
		return routeTunnel, ""
	case r.URL.Path == enroll.Path:
		return routeEnroll, ""
	case isHealthPath(r.URL.Path):
		return routeHealth, ""
	case api.Handles(r.URL.Path):
		return routeAPI, ""
	}
	return routeAdmin, ""
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = tunnel.WithClientAddr(r, rt.clients.Addr(r))
	route, device := rt.route(r)
	switch route {
	case routeConnect:
		rt.proxy.ServeConnect(w, r)
	case routeAbsolute:
		rt.proxy.ServeAbsolute(w, r)
	case routeAgent:
		rt.admit.serve(w, r, rt.webTunnel)
	case routeClientTool:
		rt.proxy.ServeClientTool(w, r, device)
	case routeWebsockify:
		rt.proxy.ServeWebsockify(w, r, device)
	case routeNoVNC:
		rt.novnc(w, r, device)
	case routeDevice:
		rt.proxy.ServeDevice(w, r, device)
	case routeTunnel:
		rt.admit.serve(w, r, rt.tunnel)
	case routeEnroll:
		rt.enroll.ServeHTTP(w, r)
	case routeHealth:
		rt.health.ServeHTTP(w, r)
	case routeAPI:
		rt.api.ServeHTTP(w, r)
	case routeAdmin:
		rt.admin.ServeHTTP(w, r)
	default:
		if rt.proxyOnly {
			http.Error(w, "not found: this address serves only proxy requests", http.StatusNotFound)
			return
		}
		http.Error(w, "not found: not a device address", http.StatusNotFound)
	}
}
