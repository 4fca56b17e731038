package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// subdomainFixture is a Proxy behind a real TLS listener, whose devices are
// local servers: Dial connects to 127.0.0.1:<port> of a known device.
// DeviceAuth takes "X-Reflector-Authorization: Bearer <user>" for the users
// alice (group ops) and root (admin), and answers 401 otherwise.
type subdomainFixture struct {
	t       *testing.T
	p       *Proxy
	front   *httptest.Server
	client  *http.Client // any *.localhost name reaches front; redirects are not followed
	next    atomic.Int64 // requests that reached no handler of the proxy
	dials   atomic.Int64
	revoked atomic.Bool // Recheck's answer, negated

	mu      sync.Mutex
	devices map[string]store.Device
	props   map[string]map[string]string
	audit   []store.AuditEvent
}

var testUsers = map[string]store.User{
	"alice": {Name: "alice", Role: store.RoleUser, Groups: []string{"ops"}},
	"root":  {Name: "root", Role: store.RoleAdmin},
}

// testClient is the client address the test front gives every request, as
// the server's router would have resolved it behind a trusted reverse proxy.
var testClient = netip.MustParseAddr("203.0.113.9")

func newSubdomainFixture(t *testing.T, tweak func(*Config)) *subdomainFixture {
	t.Helper()
	f := &subdomainFixture{t: t, devices: map[string]store.Device{}, props: map[string]map[string]string{}}
	cfg := Config{
		Authenticate: func(context.Context, netip.Addr, string, string) (store.Credential, error) {
			return store.Credential{}, store.ErrBadCredentials
		},
		Device: func(_ context.Context, id string) (store.Device, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			d, ok := f.devices[id]
			if !ok {
				return store.Device{}, fmt.Errorf("device %q: %w", id, store.ErrNotFound)
			}
			return d, nil
		},
		DeviceProperties: func(id string) map[string]string {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.props[id]
		},
		Dial: func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
			f.dials.Add(1)
			f.mu.Lock()
			_, ok := f.devices[device]
			f.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("dial device %s: %w", device, tunnel.ErrDeviceOffline)
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				return nil, fmt.Errorf("dial device %s port %d: %w", device, port, tunnel.ErrRefused)
			}
			return c, nil
		},
		DeviceAuth: func(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool) {
			name, ok := strings.CutPrefix(r.Header.Get(headerReflectorAuth), "Bearer ")
			u, known := testUsers[name]
			if !ok || !known {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"error":"authentication required"}`)
				return store.Credential{}, false
			}
			// The real DeviceAuth removes the header; this one leaves it, so
			// that the proxy's own removal is tested.
			return store.Credential{User: u}, true
		},
		Recheck: func(store.Credential, string) bool { return !f.revoked.Load() },
		Audit: func(ev store.AuditEvent) {
			f.mu.Lock()
			f.audit = append(f.audit, ev)
			f.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	f.front = httptest.NewUnstartedServer(&testFront{p: p, next: &f.next})
	f.front.EnableHTTP2 = false
	f.front.StartTLS()
	t.Cleanup(func() {
		f.front.Close()
		p.Close()
	})
	addr := f.front.Listener.Addr().String()
	f.client = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// addDevice registers a device whose web server is h, on plain HTTP, and
// returns its port.
func (f *subdomainFixture) addDevice(d store.Device, h http.Handler) uint16 {
	f.t.Helper()
	srv := httptest.NewServer(h)
	f.t.Cleanup(srv.Close)
	port := uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	if d.HTTPPort == 0 {
		d.HTTPPort = port
	}
	f.setDevice(d)
	return port
}

func (f *subdomainFixture) setDevice(d store.Device) {
	f.mu.Lock()
	f.devices[d.ID] = d
	f.mu.Unlock()
}

func (f *subdomainFixture) get(url, user string, header ...string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if user != "" {
		req.Header.Set(headerReflectorAuth, "Bearer "+user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("GET %s: %v", url, err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (f *subdomainFixture) auditEvents() []store.AuditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.AuditEvent(nil), f.audit...)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.RequestURI())
})

func TestDeviceHostIsADeviceSubdomainOnly(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	for _, tc := range []struct {
		host   string
		device string // "" for not a device host
	}{
		{"pump-17.localhost:8443", "pump-17"},
		{"pump-17.localhost", "pump-17"},
		{"PUMP-17.Localhost.:8443", "pump-17"},
		{"localhost:8443", ""}, // the admin host
		{"localhost", ""},
		{"127.0.0.1:8443", ""},
		{"[::1]:8443", ""},
		{"pump-17", ""}, // a bare id is a proxy target, not a Host
		{"pump-17.example.com", ""},
		{"a.pump-17.localhost", ""},
		{"pump_17.localhost", ""},
	} {
		got, ok := f.p.DeviceHost(tc.host)
		if got != tc.device || ok != (tc.device != "") {
			t.Errorf("DeviceHost(%q) = %q, %v; want %q", tc.host, got, ok, tc.device)
		}
	}
}

func TestDeviceHostRequestReachesTheDeviceWithTheHostAsSent(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17"}, hello)
	for _, host := range []string{"pump-17.localhost:8443", "pump-17.localhost", "PUMP-17.Localhost.:8443"} {
		req, _ := http.NewRequest(http.MethodGet, "https://x/index.html?q=1", nil)
		req.Host = host
		req.Header.Set(headerReflectorAuth, "Bearer root")
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if body := readBody(t, resp); body != "hello from "+host+"/index.html?q=1" {
			t.Errorf("Host %s: status %d body %q, want the device's page with the Host as sent", host, resp.StatusCode, body)
		}
		resp.Body.Close()
	}
}

func TestSubdomainUnauthenticatedIsAnsweredByDeviceAuth(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17"}, hello)
	resp := f.get("https://pump-17.localhost/", "")
	if resp.StatusCode != http.StatusUnauthorized || f.dials.Load() != 0 {
		t.Fatalf("status %d, %d dials; want 401 and nothing dialled", resp.StatusCode, f.dials.Load())
	}
}

func TestSubdomainRefusals(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"lab"}}, hello)
	port := f.addDevice(store.Device{ID: "pump-18", Groups: []string{"ops"}}, hello)
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"ops"}, HTTPPort: port, Ports: []uint16{22}})
	for _, tc := range []struct {
		url, user string
		status    int
		reason    string
	}{
		{"https://nope-1.localhost/", "root", http.StatusNotFound, "unknown device nope-1"},
		{"https://pump-17.localhost/", "alice", http.StatusForbidden, "no access to device pump-17"},
		{"https://pump-18.localhost/", "alice", http.StatusForbidden, fmt.Sprintf("port not allowed: device pump-18 port %d", port)},
	} {
		resp := f.get(tc.url, tc.user)
		body := readBody(t, resp)
		if resp.StatusCode != tc.status || strings.TrimSpace(body) != tc.reason {
			t.Errorf("%s as %s: %d %q; want %d %q", tc.url, tc.user, resp.StatusCode, body, tc.status, tc.reason)
		}
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused requests", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused requests audited as forwarded: %+v", evs)
	}
}

func TestSubdomainDialFailuresMapToStatus(t *testing.T) {
	var dialErr atomic.Value
	f := newSubdomainFixture(t, func(c *Config) {
		c.Dial = func(context.Context, string, uint16, netip.Addr) (net.Conn, error) {
			return nil, dialErr.Load().(error)
		}
	})
	f.setDevice(store.Device{ID: "pump-17"})
	for _, tc := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("dial device pump-17: %w", tunnel.ErrDeviceOffline), http.StatusBadGateway},
		{fmt.Errorf("dial device pump-17 port 80: %w", tunnel.ErrRefused), http.StatusBadGateway},
		{fmt.Errorf("dial device pump-17 port 80: %w", tunnel.ErrTimeout), http.StatusGatewayTimeout},
		{fmt.Errorf("dial device pump-17 port 80: %w", tunnel.ErrPortNotAllowed), http.StatusForbidden},
	} {
		dialErr.Store(tc.err)
		resp := f.get("https://pump-17.localhost/", "root")
		body := readBody(t, resp)
		if resp.StatusCode != tc.status || strings.Count(body, "\n") != 1 || !strings.Contains(body, "pump-17") {
			t.Errorf("%v: %d %q; want %d and one line naming the device", tc.err, resp.StatusCode, body, tc.status)
		}
	}
}

func TestSubdomainSetsForwardedHeadersAndDropsSpoofedOnes(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	got := make(chan http.Header, 1)
	f.addDevice(store.Device{ID: "pump-17"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	f.get("https://pump-17.localhost:8443/", "root",
		"X-Forwarded-For", "10.9.9.9",
		"X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "gopher",
		"X-Forwarded-Port", "1",
		"X-Real-Ip", "10.9.9.9",
		"Forwarded", "for=10.9.9.9",
		"Proxy-Authorization", "Basic c2VjcmV0",
		"Authorization", "Basic ZGV2aWNlOnB3", // the device's own login passes
	)
	h := <-got
	want := map[string]string{
		"X-Forwarded-For":           testClient.String(),
		"X-Forwarded-Proto":         "https",
		"X-Forwarded-Host":          "pump-17.localhost:8443",
		"X-Forwarded-Port":          "",
		"X-Real-Ip":                 "",
		"Forwarded":                 "",
		"Proxy-Authorization":       "",
		"X-Reflector-Authorization": "",
		"Authorization":             "Basic ZGV2aWNlOnB3",
	}
	for name, v := range want {
		if vs := h.Values(name); strings.Join(vs, ",") != v {
			t.Errorf("device saw %s %q, want %q", name, vs, v)
		}
	}
}

func TestSubdomainRewritesLocationToTheDevice(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	}))
	f.props["pump-17"] = map[string]string{"targetHost": "192.168.1.10"}
	for to, want := range map[string]string{
		"http://127.0.0.1:8080/login?next=%2F": "https://pump-17.localhost:8443/login?next=%2F",
		"http://192.168.1.10/setup":            "https://pump-17.localhost:8443/setup",
		"https://example.com/help":             "https://example.com/help",
		"/relative":                            "/relative",
	} {
		resp := f.get("https://pump-17.localhost:8443/?to="+urlQueryEscape(to), "root")
		if loc := resp.Header.Get("Location"); loc != want {
			t.Errorf("device redirect to %s: Location %q, want %q", to, loc, want)
		}
	}
}

func TestSubdomainDropsTheReflectorsCookiesFromTheDevice(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "sid=device-own; Path=/; HttpOnly")
		h.Add("Set-Cookie", "__Host-reflector_device=planted; Path=/; Secure")
		h.Add("Set-Cookie", "__HOST-Reflector_handoff=planted; Path=/; Secure")
		h.Add("Set-Cookie", " __Host-reflector_session=planted; Path=/; Secure")
		h.Add("Set-Cookie", "lang=de")
	}))
	resp := f.get("https://pump-17.localhost:8443/", "root")
	if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"sid=device-own; Path=/; HttpOnly", "lang=de"}) {
		t.Fatalf("Set-Cookie reaching the browser: %q", got)
	}
}

// TestDeviceCookiesStayOnTheDevicesHost: a device cannot set cookies for
// the other hosts of the domain (Domain= is dropped, so every cookie it sets
// is host-only), nor a nameless cookie that a browser would read as a
// __Host- or __Secure- one, nor clear the whole site's data.
func TestDeviceCookiesStayOnTheDevicesHost(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "sid=1; Domain=localhost; Path=/; HttpOnly")
		h.Add("Set-Cookie", "theme=dark; path=/; DOMAIN=.localhost")
		h.Add("Set-Cookie", "__Host-reflector_session")
		h.Add("Set-Cookie", "__secure-x=1; Secure")
		h.Add("Set-Cookie", " __Secure-planted; Secure")
		h.Add("Set-Cookie", "=__Host-reflector_device=planted; Secure; Path=/")
		h.Set("Clear-Site-Data", `"cookies", "storage"`)
	}))
	resp := f.get("https://pump-17.localhost:8443/", "root")
	want := []string{"sid=1; Path=/; HttpOnly", "theme=dark; path=/", "__secure-x=1; Secure"}
	if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, want) {
		t.Errorf("Set-Cookie reaching the browser: %q\nwant %q", got, want)
	}
	if v := resp.Header.Get("Clear-Site-Data"); v != "" {
		t.Errorf("Clear-Site-Data reached the browser: %q", v)
	}
}

func urlQueryEscape(s string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "?", "%3F", "#", "%23", "+", "%2B")
	return r.Replace(s)
}

func TestDeviceLocation(t *testing.T) {
	const host, local = "pump-17.localhost", "192.168.1.10"
	for _, tc := range []struct {
		loc, port, want string // want "" : left alone
	}{
		{"http://localhost/x?y=1#f", "8443", "https://pump-17.localhost:8443/x?y=1#f"},
		{"http://localhost:8080/x", "", "https://pump-17.localhost/x"},
		{"http://127.0.0.1:8080/login", "8443", "https://pump-17.localhost:8443/login"},
		{"http://127.1.2.3/", "8443", "https://pump-17.localhost:8443/"},
		{"https://[::1]:443/a", "8443", "https://pump-17.localhost:8443/a"},
		{"http://[::ffff:127.0.0.1]/", "8443", "https://pump-17.localhost:8443/"},
		{"http://0.0.0.0/", "8443", "https://pump-17.localhost:8443/"},
		{"http://LOCALHOST.:80/a%2Fb", "8443", "https://pump-17.localhost:8443/a%2Fb"},
		{"http://192.168.1.10:80/cfg", "8443", "https://pump-17.localhost:8443/cfg"},
		{"//localhost/x", "8443", "https://pump-17.localhost:8443/x"},
		{"http://user:pw@localhost/x", "8443", "https://pump-17.localhost:8443/x"},
		{"http://pump-17.localhost/p", "8443", "https://pump-17.localhost:8443/p"},
		{"http://PUMP-17.localhost:8443/p", "8443", "https://pump-17.localhost:8443/p"},
		{"https://pump-17.localhost:8443/p", "8443", ""},
		{"http://pump-18.localhost/", "8443", ""},
		{"http://192.168.1.11/", "8443", ""},
		{"https://example.com/", "8443", ""},
		{"ftp://localhost/", "8443", ""},
		{"/relative", "8443", ""},
		{"relative/x", "8443", ""},
		{"http://%zz/", "8443", ""},
	} {
		got, ok := deviceLocation(tc.loc, host, tc.port, local)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("deviceLocation(%q, port %q) = %q, %v; want %q", tc.loc, tc.port, got, ok, tc.want)
		}
	}
}

func TestWebServerPortAndTLS(t *testing.T) {
	p, err := New(Config{
		Authenticate: func(context.Context, netip.Addr, string, string) (store.Credential, error) {
			return store.Credential{}, nil
		},
		Device: func(context.Context, string) (store.Device, error) { return store.Device{}, nil },
		Dial:   func(context.Context, string, uint16, netip.Addr) (net.Conn, error) { return nil, nil },
		DeviceAuth: func(http.ResponseWriter, *http.Request, string) (store.Credential, bool) {
			return store.Credential{}, false
		},
		DeviceProperties: func(id string) map[string]string {
			switch id {
			case "https-agent":
				return map[string]string{"httpPort": "443", "httpsEnable": "true"}
			case "http-agent":
				return map[string]string{"httpPort": "8080", "httpsEnable": "false", "targetHost": "Device.LAN"}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    store.Device
		want webServer
	}{
		{store.Device{ID: "offline"}, webServer{port: 80}},
		{store.Device{ID: "offline", HTTPTLS: true}, webServer{port: 80, tls: true}},
		{store.Device{ID: "https-agent"}, webServer{port: 443, tls: true}},
		{store.Device{ID: "http-agent"}, webServer{port: 8080, local: "device.lan"}},
		{store.Device{ID: "http-agent", HTTPTLS: true}, webServer{port: 8080, tls: true, local: "device.lan"}},
		// The record's port comes with the record's TLS: the agent's
		// httpsEnable was about the agent's port.
		{store.Device{ID: "https-agent", HTTPPort: 8081}, webServer{port: 8081}},
		{store.Device{ID: "https-agent", HTTPPort: 8443, HTTPTLS: true}, webServer{port: 8443, tls: true}},
	} {
		if got := p.webServer(tc.d); got != tc.want {
			t.Errorf("webServer(%+v) = %+v, want %+v", tc.d, got, tc.want)
		}
	}
}

// selfSigned is a certificate for name, as a device makes for itself.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// httpsDevice starts a device web server with a self-signed certificate for
// pump-17.localhost that reports the SNI it was reached with.
func httpsDevice(t *testing.T) (uint16, *x509.Certificate) {
	t.Helper()
	cert, leaf := selfSigned(t, "pump-17.localhost")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "secure hello, sni %s, proto %s", r.TLS.ServerName, r.Proto)
	}))
	srv.EnableHTTP2 = true // offered; the reflector must still speak HTTP/1.1
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return uint16(srv.Listener.Addr().(*net.TCPAddr).Port), leaf
}

func TestSubdomainToHTTPSDeviceWithSelfSignedCertificate(t *testing.T) {
	port, _ := httpsDevice(t)
	f := newSubdomainFixture(t, nil)
	f.setDevice(store.Device{ID: "pump-17", HTTPPort: port, HTTPTLS: true})
	resp := f.get("https://pump-17.localhost/", "root")
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "secure hello, sni pump-17.localhost, proto HTTP/1.1" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

func TestSubdomainVerifiesDeviceCertificatesWithDeviceCAs(t *testing.T) {
	port, leaf := httpsDevice(t)
	trusted := x509.NewCertPool()
	trusted.AddCert(leaf)
	_, other := selfSigned(t, "pump-17.localhost")
	untrusted := x509.NewCertPool()
	untrusted.AddCert(other)
	for _, tc := range []struct {
		name   string
		pool   *x509.CertPool
		status int
	}{{"trusted", trusted, http.StatusOK}, {"untrusted", untrusted, http.StatusBadGateway}} {
		f := newSubdomainFixture(t, func(c *Config) { c.DeviceCAs = tc.pool })
		f.setDevice(store.Device{ID: "pump-17", HTTPPort: port, HTTPTLS: true})
		resp := f.get("https://pump-17.localhost/", "root")
		body := readBody(t, resp)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusBadGateway && !strings.Contains(body, "certificate is not trusted") {
			t.Errorf("%s: reason %q", tc.name, body)
		}
	}
}

func TestSubdomainTLSToAPlainDeviceSaysSo(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	port := f.addDevice(store.Device{ID: "pump-17"}, hello)
	f.setDevice(store.Device{ID: "pump-17", HTTPPort: port, HTTPTLS: true})
	resp := f.get("https://pump-17.localhost/", "root")
	if body := readBody(t, resp); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "does not speak TLS") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestSubdomainStreamsUnbuffered has the device send one piece, wait until
// the client has it, then send the next: a buffering proxy deadlocks. An
// event stream, and a body of known length (which ReverseProxy would
// buffer without FlushInterval -1).
func TestSubdomainStreamsUnbuffered(t *testing.T) {
	for _, tc := range []struct{ name, contentType, length string }{
		{"event stream", "text/event-stream", ""},
		{"known length", "application/octet-stream", "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSubdomainFixture(t, nil)
			ack := make(chan struct{})
			f.addDevice(store.Device{ID: "pump-17"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.length != "" {
					w.Header().Set("Content-Length", tc.length)
				}
				for i := range 3 {
					fmt.Fprintf(w, "data: %d\n\n", i)
					w.(http.Flusher).Flush()
					select {
					case <-ack:
					case <-time.After(5 * time.Second):
						return
					}
				}
				io.WriteString(w, strings.Repeat(".", 3*(10-len("data: 0\n\n"))))
			}))
			resp := f.get("https://pump-17.localhost/events", "root")
			br := bufio.NewReader(resp.Body)
			for i := range 3 {
				line, err := br.ReadString('\n')
				if err != nil || line != fmt.Sprintf("data: %d\n", i) {
					t.Fatalf("piece %d: %q %v", i, line, err)
				}
				br.ReadString('\n')
				ack <- struct{}{}
			}
		})
	}
}

func TestSubdomainPassesWebSocketsThroughAndAuditsThem(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	wsEchoDevice(f)
	d := websocket.Dialer{
		NetDialContext:  f.client.Transport.(*http.Transport).DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	hdr := http.Header{headerReflectorAuth: {"Bearer root"}}
	c, resp, err := d.Dial("wss://pump-17.localhost/ws", hdr)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	for _, m := range []string{"one", "two"} {
		c.WriteMessage(websocket.TextMessage, []byte(m))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != m {
			t.Fatalf("echo %q: %q %v", m, got, err)
		}
	}
	c.Close()
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditRequest || ev.User != "root" || ev.Device != "pump-17" || !ev.OK ||
		ev.Reason != "GET /ws 101" || ev.BytesUp == 0 || ev.BytesDown == 0 || ev.Client != testClient.String() {
		t.Errorf("audit event %+v", ev)
	}
}

// TestRevalidateEndsASubdomainStream: a revoked credential cuts an event
// stream that is open.
func TestRevalidateEndsASubdomainStream(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	resp := f.get("https://pump-17.localhost/events", "alice")
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: hello\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	if n := f.p.Open(); n != 1 {
		t.Fatalf("Open() = %d, want 1", n)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5 s after revocation")
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; !strings.HasSuffix(ev.Reason, "(closed: access revoked)") {
		t.Errorf("audit reason %q", ev.Reason)
	}
}

func TestSubdomainAuditsEachRequest(t *testing.T) {
	f := newSubdomainFixture(t, nil)
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, hello)
	for range 2 {
		readBody(t, f.get("https://pump-17.localhost/a/b?c=d", "alice"))
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 2 })
	for _, ev := range f.auditEvents() {
		want := "hello from pump-17.localhost/a/b?c=d"
		if ev.Kind != store.AuditRequest || ev.User != "alice" || ev.Reason != "GET /a/b 200" || ev.BytesDown != int64(len(want)) || !ev.OK {
			t.Errorf("audit event %+v", ev)
		}
	}
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after the requests ended", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSubdomainFlushDoesNotAllocate: ReverseProxy flushes after every write
// of a streamed response, through countingWriter.
func TestSubdomainFlushDoesNotAllocate(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &countingWriter{ResponseWriter: rec}
	rc := http.NewResponseController(w)
	if n := testing.AllocsPerRun(100, func() { rc.Flush() }); n != 0 {
		t.Errorf("%v allocations per flush", n)
	}
}

func FuzzDeviceLocation(f *testing.F) {
	for _, s := range []string{"http://localhost/x", "//127.0.0.1:80/", "http://[::1]/a?b#c", "http://pump-17.localhost/", "/x", "http://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		got, ok := deviceLocation(loc, "pump-17.localhost", "8443", "10.0.0.1")
		if !ok {
			return
		}
		if !strings.HasPrefix(got, "https://pump-17.localhost:8443") {
			t.Fatalf("%q rewritten to %q", loc, got)
		}
		if rest := strings.TrimPrefix(got, "https://pump-17.localhost:8443"); rest != "" && !strings.ContainsAny(rest[:1], "/?#") {
			t.Fatalf("%q rewritten to %q: another host", loc, got)
		}
	})
}
