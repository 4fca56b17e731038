package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// proxyClient is an HTTP client set to use the fixture's TLS front as its
// proxy, with user (nil: none) as its proxy credentials: what a browser or
// curl --proxy does for http:// URLs.
func proxyClient(t *testing.T, f *subdomainFixture, user *url.Userinfo) *http.Client {
	t.Helper()
	u, err := url.Parse(f.front.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = user
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

var aliceLogin = url.UserPassword("alice", "alice-pw")

// getThrough GETs rawURL through the proxy and returns the response with its
// whole body.
func getThrough(t *testing.T, c *http.Client, rawURL string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	return resp, readBody(t, resp)
}

// TestAbsoluteGetReachesTheDeviceWithTheHostAsSent: GET http://<device>/…
// through the proxy reaches the device's web server (the record's port, or
// the one in the URL), with the Host header as the client sent it and
// without the proxy credentials; each request is audited once, with the
// client's address.
func TestAbsoluteGetReachesTheDeviceWithTheHostAsSent(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	proxyHeaders := make(chan string, 8)
	port := f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxyHeaders <- r.Header.Get("Proxy-Authorization") + r.Header.Get("Proxy-Connection")
		hello(w, r)
	}))
	c := proxyClient(t, f, aliceLogin)
	withPort := "pump-17.localhost:" + strconv.Itoa(int(port))
	requests := []struct{ url, host, path string }{
		{"http://pump-17.localhost/index.html?q=1", "pump-17.localhost", "/index.html?q=1"},
		{"http://" + withPort + "/a/b", withPort, "/a/b"},
		{"http://pump-17/bare", "pump-17", "/bare"},
	}
	for _, rq := range requests {
		resp, body := getThrough(t, c, rq.url)
		if want := "hello from " + rq.host + rq.path; resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", rq.url, resp.StatusCode, body, want)
		}
		if h := <-proxyHeaders; h != "" {
			t.Errorf("GET %s: the device saw proxy headers %q", rq.url, h)
		}
	}
	// One connection, one request at a time: each request's event is
	// written before the next request is read.
	waitUntil(t, func() bool { return len(f.auditEvents()) == len(requests) })
	for i, ev := range f.auditEvents() {
		path, _, _ := strings.Cut(requests[i].path, "?")
		want := store.AuditEvent{Kind: store.AuditRequest, OK: true, User: "alice", Device: "pump-17", Port: port,
			Client: testClient.String(), Reason: "GET " + path + " 200",
			BytesDown: int64(len("hello from " + requests[i].host + requests[i].path))}
		ev.Duration = 0
		if ev != want {
			t.Errorf("audit event %d\n%+v, want\n%+v", i, ev, want)
		}
	}
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after the requests ended", n)
	}
}

// TestAbsoluteRefusals lists every answer an absolute-form request can get
// before anything is dialled, as TestConnectRefusals does for CONNECT.
func TestAbsoluteRefusals(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"lab"}})
	f.setDevice(store.Device{ID: "pump-19", Groups: []string{"ops"}, Ports: []uint16{22}})
	for _, tc := range []struct {
		name          string
		user          *url.Userinfo
		url           string
		status        int
		header, value string
		reason        string
	}{
		{"no credentials", nil, "http://pump-17.localhost/", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"wrong password", url.UserPassword("alice", "nope"), "http://pump-17.localhost/", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"empty password", url.User("alice"), "http://pump-17.localhost/", 407, "Proxy-Authenticate", `Basic realm="reflector"`, "proxy authentication required"},
		{"throttled login", url.UserPassword("locked", "x"), "http://pump-17.localhost/", 429, "Retry-After", "42", "too many failed attempts; retry in 42s"},
		{"credentials not checkable", url.UserPassword("faulty", "x"), "http://pump-17.localhost/", 500, "", "", "internal error: the reflector cannot check this request now"},
		{"port 0", aliceLogin, "http://pump-17.localhost:0/", 400, "", "", `bad target address: port "0"`},
		{"IP address", aliceLogin, "http://127.0.0.1:22/", 403, "", "", "not a device address: 127.0.0.1"},
		{"other domain", aliceLogin, "http://example.com/", 403, "", "", "not a device address: example.com"},
		{"the reflector itself", aliceLogin, "http://localhost/", 403, "", "", "not a device address: localhost"},
		{"no access", aliceLogin, "http://pump-18.localhost/", 403, "", "", "no access to device pump-18"},
		{"port not in the device record", aliceLogin, "http://pump-19.localhost:23/", 403, "", "", "port not allowed: device pump-19 port 23"},
		{"web port not in the device record", aliceLogin, "http://pump-19.localhost/", 403, "", "", "port not allowed: device pump-19 port 80"},
		{"unknown device", aliceLogin, "http://nope-1.localhost/", 404, "", "", "unknown device nope-1"},
		{"device lookup fails", aliceLogin, "http://store-fault.localhost/", 500, "", "", "internal error: the reflector cannot check this request now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := getThrough(t, proxyClient(t, f, tc.user), tc.url)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.header != "" && resp.Header.Get(tc.header) != tc.value {
				t.Errorf("%s %q, want %q", tc.header, resp.Header.Get(tc.header), tc.value)
			}
			if !oneLine(body) || strings.TrimSpace(body) != tc.reason {
				t.Errorf("body %q, want the one line %q", body, tc.reason)
			}
		})
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused requests", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused requests audited as forwarded: %+v", evs)
	}
}

// TestAbsoluteHTTPSIsRefusedUseConnect: an absolute-form https:// request
// is not forwarded (the proxy would have to speak TLS to the device for
// the client); the reason tells the client to use CONNECT.
func TestAbsoluteHTTPSIsRefusedUseConnect(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	io.WriteString(c, "GET https://pump-17.localhost/ HTTP/1.1\r\nHost: pump-17.localhost\r\nProxy-Authorization: Bearer tok-alice\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadRequest || !oneLine(body) || !strings.Contains(body, "use CONNECT") {
		t.Errorf("%d %q, want 400 and one line saying to use CONNECT", resp.StatusCode, body)
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused request audited: %+v", evs)
	}
}

// TestAbsoluteDialFailuresMapToStatus: what the hub or the agent answers to
// the stream open becomes the response's status, with a one-line reason;
// the request reached the open, so it is audited once (OK below 500,
// as for any forwarded request).
func TestAbsoluteDialFailuresMapToStatus(t *testing.T) {
	failures := map[uint16]error{
		1: fmt.Errorf("dial device pump-17: %w", tunnel.ErrDeviceOffline),
		2: fmt.Errorf("dial device pump-17 port 2: %w", &tunnel.OpenError{Status: tunnel.StatusNotAllowed}),
		3: fmt.Errorf("dial device pump-17 port 3: %w", &tunnel.OpenError{Status: tunnel.StatusRefused, Message: "connection refused"}),
		4: fmt.Errorf("dial device pump-17 port 4: open stream: %w", tunnel.ErrTimeout),
		5: fmt.Errorf("dial device pump-17 port 5: %w", &tunnel.OpenError{Status: tunnel.StatusOther, Message: "out of memory"}),
	}
	clients := make(chan netip.Addr, 8)
	f := newProxyFixture(t, func(_ context.Context, _ string, port uint16, client netip.Addr) (net.Conn, error) {
		clients <- client
		return nil, failures[port]
	}, nil)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c := proxyClient(t, f, aliceLogin)
	for _, tc := range []struct {
		name   string
		port   uint16
		status int
	}{
		{"device offline", 1, http.StatusBadGateway},
		{"port not allowed by the agent", 2, http.StatusForbidden},
		{"refused by the device", 3, http.StatusBadGateway},
		{"agent did not answer", 4, http.StatusGatewayTimeout},
		{"agent failure", 5, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.auditEvents())
			resp, body := getThrough(t, c, "http://pump-17.localhost:"+strconv.Itoa(int(tc.port))+"/x")
			if resp.StatusCode != tc.status || !oneLine(body) || !strings.Contains(body, "pump-17") {
				t.Errorf("%d %q; want %d and one line naming the device", resp.StatusCode, body, tc.status)
			}
			if want := failures[tc.port].Error() + "\n"; body != want {
				t.Errorf("reason %q, want %q", body, want)
			}
			if client := <-clients; client != testClient {
				t.Errorf("dialled for client %v, want %v", client, testClient)
			}
			waitUntil(t, func() bool { return len(f.auditEvents()) == before+1 })
			ev := f.auditEvents()[before]
			if ev.Kind != store.AuditRequest || ev.OK != (tc.status < 500) || ev.Port != tc.port ||
				ev.Reason != fmt.Sprintf("GET /x %d", tc.status) || ev.Client != testClient.String() {
				t.Errorf("audit event %+v", ev)
			}
		})
	}
}

// TestAbsoluteOpenTimeoutIs504: the open gets Config.OpenTimeout, as for
// CONNECT.
func TestAbsoluteOpenTimeoutIs504(t *testing.T) {
	const timeout = 100 * time.Millisecond
	f := newProxyFixture(t, func(ctx context.Context, device string, port uint16, _ netip.Addr) (net.Conn, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, fmt.Errorf("test: no deadline on the open")
		}
		<-ctx.Done()
		return nil, fmt.Errorf("dial device %s port %d: open stream: %w", device, port, tunnel.ErrTimeout)
	}, func(c *Config) { c.OpenTimeout = timeout })
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	start := time.Now()
	resp, body := getThrough(t, proxyClient(t, f, aliceLogin), "http://pump-17.localhost/")
	if resp.StatusCode != http.StatusGatewayTimeout || body != "dial device pump-17 port 80: open stream: device timeout\n" {
		t.Errorf("%d %q, want 504 and the reason", resp.StatusCode, body)
	}
	if took := time.Since(start); took < timeout {
		t.Errorf("answered after %v, before OpenTimeout %v", took, timeout)
	}
}

// TestRevalidateEndsAnAbsoluteFormResponse: a response the device is still
// streaming ends when the credential no longer reaches the device, and
// its audit event says so.
func TestRevalidateEndsAnAbsoluteFormResponse(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond): // a device streaming slowly
			}
		}
	}))
	resp, err := proxyClient(t, f, aliceLogin).Get("http://pump-17.localhost/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: 0\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	if n := f.p.Open(); n != 1 {
		t.Fatalf("Open() = %d, want 1", n)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	streamEnds(t, br)
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.Reason != "GET /events 200 (closed: access revoked)" || ev.User != "alice" || ev.Client != testClient.String() {
		t.Errorf("audit event %+v", ev)
	}
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after the response ended", n)
	}
}
