package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

func newTestRouter(t *testing.T, proxyOnly bool) *router {
	t.Helper()
	p, err := proxy.New(proxy.Config{
		Domain: "devices.example.com",
		Authenticate: func(context.Context, netip.Addr, string, string) (store.Credential, error) {
			return store.Credential{}, store.ErrBadCredentials
		},
		Device: func(context.Context, string) (store.Device, error) { return store.Device{}, store.ErrNotFound },
		Dial: func(context.Context, string, uint16, netip.Addr) (net.Conn, error) {
			return nil, tunnel.ErrDeviceOffline
		},
		DeviceAuth: func(w http.ResponseWriter, _ *http.Request, _ string) (store.Credential, bool) {
			http.Error(w, "device auth", http.StatusUnauthorized)
			return store.Credential{}, false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &router{proxy: p, proxyOnly: proxyOnly}
}

// TestRouterDecidesByFormHostPathAndHeaders is the dispatch of the TLS
// listener, top to bottom (DESIGN.md, "Listeners").
func TestRouterDecidesByFormHostPathAndHeaders(t *testing.T) {
	const (
		agentProto  = "com.appinf.webtunnel.server/1.0"
		clientProto = "com.appinf.webtunnel.client/1.0"
	)
	rt := newTestRouter(t, false)
	for _, tc := range []struct {
		name         string
		method, host string
		target       string // request target: a path, an absolute URL, or host:port for CONNECT
		protocol     string // Sec-WebSocket-Protocol, if any
		want         route
		device       string
	}{
		{"CONNECT by full name", "CONNECT", "pump-17.devices.example.com:22", "pump-17.devices.example.com:22", "", routeConnect, ""},
		{"CONNECT by bare id", "CONNECT", "pump-17:22", "pump-17:22", "", routeConnect, ""},
		{"CONNECT to anything is the proxy's to refuse", "CONNECT", "example.org:443", "example.org:443", "", routeConnect, ""},
		{"absolute-form", "GET", "pump-17.devices.example.com", "http://pump-17.devices.example.com/x", "", routeAbsolute, ""},
		{"absolute-form to the admin host is still a proxy request", "GET", "devices.example.com", "http://devices.example.com/", "", routeAbsolute, ""},
		{"WebTunnelAgent upgrade on the admin host", "POST", "devices.example.com", "/", agentProto, routeAgent, ""},
		{"WebTunnelAgent upgrade on an IP and any path", "POST", "10.0.0.5:443", "/any/path", agentProto, routeAgent, ""},
		{"WebTunnelAgent upgrade on a device host", "GET", "pump-17.devices.example.com", "/", agentProto, routeAgent, ""},
		{"client tool on a device host", "POST", "pump-17.devices.example.com:8443", "/", clientProto, routeClientTool, "pump-17"},
		{"client tool on the admin host", "POST", "devices.example.com", "/", clientProto, routeNotFound, ""},
		{"client tool on an IP", "POST", "127.0.0.1", "/", clientProto, routeNotFound, ""},
		{"device host", "GET", "pump-17.devices.example.com", "/index.html", "", routeDevice, "pump-17"},
		{"device host, mixed case and root dot", "GET", "PUMP-17.Devices.Example.com.:8443", "/", "", routeDevice, "pump-17"},
		{"device host owns /tunnel/v1 too", "GET", "pump-17.devices.example.com", tunnel.Path, "", routeDevice, "pump-17"},
		{"device host: a WebSocket of the device's own", "GET", "pump-17.devices.example.com", "/ws", "chat", routeDevice, "pump-17"},
		{"noVNC's bridge, macchina.io's path", "GET", "pump-17.devices.example.com", "/my-devices/websockify?port=5900", "binary", routeWebsockify, "pump-17"},
		{"noVNC's bridge, our path", "GET", "pump-17.devices.example.com:8443", "/.reflector/websockify", "", routeWebsockify, "pump-17"},
		{"noVNC's bridge as noVNC's app resolves its default path", "GET", "pump-17.devices.example.com", "/.reflector/novnc/websockify", "binary", routeWebsockify, "pump-17"},
		{"noVNC's bridge as noVNC's app resolves macchina.io's path", "GET", "pump-17.devices.example.com", "/.reflector/novnc/my-devices/websockify?port=5900", "binary", routeWebsockify, "pump-17"},
		{"noVNC's app on a device host", "GET", "pump-17.devices.example.com:8443", "/.reflector/novnc/vnc.html?autoconnect=true", "", routeNoVNC, "pump-17"},
		{"noVNC's app, the bare prefix", "GET", "pump-17.devices.example.com", "/.reflector/novnc", "", routeNoVNC, "pump-17"},
		{"noVNC's app only on a device host", "GET", "devices.example.com", "/.reflector/novnc/vnc.html", "", routeAdmin, ""},
		{"not noVNC's app", "GET", "pump-17.devices.example.com", "/.reflector/novncx", "", routeDevice, "pump-17"},
		{"the bridge only on a device host", "GET", "devices.example.com", "/my-devices/websockify?port=5900", "binary", routeAdmin, ""},
		{"our agent", "GET", "devices.example.com", tunnel.Path, "reflector.v1", routeTunnel, ""},
		{"our agent by IP", "GET", "10.0.0.5:8443", tunnel.Path, "reflector.v1", routeTunnel, ""},
		{"enrolment", "POST", "devices.example.com", "/enroll/v1", "", routeEnroll, ""},
		{"liveness on the admin host", "GET", "devices.example.com", "/healthz", "", routeHealth, ""},
		{"readiness by IP, as load balancers probe", "HEAD", "10.0.0.5:8443", "/readyz", "", routeHealth, ""},
		{"macchina.io's probe path", "GET", "devices.example.com:8443", "/my-devices/health.json", "", routeHealth, ""},
		{"any method: the health handler answers 405", "POST", "devices.example.com", "/healthz", "", routeHealth, ""},
		{"not a health path", "GET", "devices.example.com", "/healthz/x", "", routeAdmin, ""},
		{"device host owns /healthz", "GET", "pump-17.devices.example.com", "/healthz", "", routeDevice, "pump-17"},
		{"device host owns /readyz", "GET", "pump-17.devices.example.com", "/readyz", "", routeDevice, "pump-17"},
		{"device host owns /my-devices/health.json", "GET", "pump-17.devices.example.com", "/my-devices/health.json", "", routeDevice, "pump-17"},
		{"admin host", "GET", "devices.example.com", "/", "", routeAdmin, ""},
		{"admin host login", "POST", "devices.example.com:8443", "/login", "", routeAdmin, ""},
		{"remote-login's token endpoint", "POST", "127.0.0.1:8443", "/my-devices/api/token", "", routeAdmin, ""},
		{"another name is the admin host's to answer", "GET", "example.org", "/", "", routeAdmin, ""},
		{"a sub-subdomain is not a device", "GET", "a.pump-17.devices.example.com", "/", "", routeAdmin, ""},
		{"a bad device label is not a device", "GET", "pump_17.devices.example.com", "/", "", routeAdmin, ""},
	} {
		r := newRequest(t, tc.method, tc.host, tc.target, tc.protocol)
		got, device := rt.route(r)
		if got != tc.want || device != tc.device {
			t.Errorf("%s: %s %s (Host %s) → %v %q; want %v %q", tc.name, tc.method, tc.target, tc.host, got, device, tc.want, tc.device)
		}
	}
}

// TestProxyListenerServesProxyRequestsOnly: --proxy-listen answers
// everything but CONNECT and absolute-form with 404.
func TestProxyListenerServesProxyRequestsOnly(t *testing.T) {
	rt := newTestRouter(t, true)
	for _, tc := range []struct {
		method, host, target, protocol string
		want                           route
	}{
		{"CONNECT", "pump-17:22", "pump-17:22", "", routeConnect},
		{"GET", "pump-17.devices.example.com", "http://pump-17.devices.example.com/", "", routeAbsolute},
		{"GET", "devices.example.com", "/", "", routeNotFound},
		{"GET", "pump-17.devices.example.com", "/", "", routeNotFound},
		{"GET", "devices.example.com", "/healthz", "", routeNotFound},
		{"GET", "127.0.0.1:8080", "/readyz", "", routeNotFound},
		{"GET", "devices.example.com", tunnel.Path, "reflector.v1", routeNotFound},
		{"POST", "devices.example.com", "/", "com.appinf.webtunnel.server/1.0", routeNotFound},
	} {
		r := newRequest(t, tc.method, tc.host, tc.target, tc.protocol)
		if got, _ := rt.route(r); got != tc.want {
			t.Errorf("%s %s (Host %s) → %v; want %v", tc.method, tc.target, tc.host, got, tc.want)
		}
	}
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, newRequest(t, "GET", "devices.example.com", "/", ""))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "only proxy requests") {
		t.Fatalf("plain listener, admin page: %d %q", w.Code, w.Body.String())
	}
}

// TestRouterResolvesTheClientAddressOnceForEveryHandler: behind a trusted
// reverse proxy, every handler sees the forwarded address.
func TestRouterResolvesTheClientAddressOnceForEveryHandler(t *testing.T) {
	rt := newTestRouter(t, false)
	trusted, err := auth.ParseTrustedProxies([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	rt.clients = auth.ClientResolver{Trusted: trusted}
	var seen netip.Addr
	rt.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = tunnel.ClientAddr(r) })
	r := newRequest(t, "GET", "devices.example.com", "/", "")
	r.RemoteAddr = "10.1.2.3:40000"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	rt.ServeHTTP(httptest.NewRecorder(), r)
	if seen != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("admin saw client %v; want the forwarded 198.51.100.7", seen)
	}
}

// newRequest parses a request as the server would read it off the wire.
func newRequest(t *testing.T, method, host, target, protocol string) *http.Request {
	t.Helper()
	raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
	if protocol != "" {
		raw += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	r.RemoteAddr = "192.0.2.1:50000"
	return r
}
