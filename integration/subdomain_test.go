package integration

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
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// Device-subdomain browsing over the real server: a client asks for
// https://pump-17.localhost:<port>/ (its dialer sends every name to the
// server's 127.0.0.1 address, as *.localhost resolves in browsers), and
// authenticates with X-Reflector-Authorization: Bearer <token>.

// subHeaderAuth is the header programs authenticate with on a device
// subdomain.
const subHeaderAuth = "X-Reflector-Authorization"

// subDevice is a device web UI on 127.0.0.1 that records what it was sent.
type subDevice struct {
	port uint16
	mu   sync.Mutex
	seen []*http.Request // header and host of each request, bodies not kept
}

func (d *subDevice) last(t *testing.T) *http.Request {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) == 0 {
		t.Fatal("the device saw no request")
	}
	return d.seen[len(d.seen)-1]
}

// newSubDevice serves mux on a new port, recording each request.
func newSubDevice(t testing.TB, mux *http.ServeMux) *subDevice {
	d := &subDevice{}
	d.port = webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.seen = append(d.seen, &http.Request{Method: r.Method, Host: r.Host, URL: r.URL, Header: r.Header.Clone()})
		d.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	return d
}

// subStack is a stack with user alice (group plant-a), her token, and
// device pump-17 of plant-a whose agent forwards the given device ports;
// the first is its web port.
func subStack(t *testing.T, ports ...uint16) (*stack, string) {
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	tok, _, err := s.srv.Store().CreateToken(store.Token{User: "alice", Name: "subdomain-test"})
	if err != nil {
		t.Fatal(err)
	}
	secret := s.addDevice(store.Device{ID: "pump-17", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "pump-17", Secret: secret, Ports: ports, HTTPPort: ports[0]})
	return s, tok
}

// subClient is a client for device subdomains of the server at addr: every
// name is dialled at addr, and TLS checks the certificate (pool) for the
// name in the URL. Redirects are returned, not followed.
func subClient(addr string, pool *x509.CertPool) *http.Client {
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// subURL is https://<device>.localhost:<port><path> for the server at addr.
func subURL(addr net.Addr, device, path string) string {
	return fmt.Sprintf("https://%s.localhost:%d%s", device, addr.(*net.TCPAddr).Port, path)
}

func subGet(t testing.TB, c *http.Client, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(subHeaderAuth, "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestSubdomainServesADevicePageWithForwardingHeaders(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pump-17 page %s", r.URL.Path)
	})
	dev := newSubDevice(t, mux)
	s, tok := subStack(t, dev.port)
	c := subClient(s.srv.Addr().String(), s.pool)
	url := subURL(s.srv.Addr(), "pump-17", "/status")
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set(subHeaderAuth, "Bearer "+tok)
	req.Header.Set("X-Forwarded-For", "10.6.6.6") // spoofed: must not reach the device
	req.Header.Set("Authorization", "Basic ZGV2aWNlOnB3")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "pump-17 page /status" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	host := strings.TrimPrefix(url, "https://")
	host = host[:strings.Index(host, "/")]
	seen := dev.last(t)
	for name, want := range map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  host,
		subHeaderAuth:       "",
		"Authorization":     "Basic ZGV2aWNlOnB3", // the device's own login passes untouched
	} {
		if got := strings.Join(seen.Header.Values(name), ","); got != want {
			t.Errorf("device saw %s %q, want %q", name, got, want)
		}
	}
	if seen.Host != host {
		t.Errorf("device saw Host %q, want %q", seen.Host, host)
	}
	waitFor(t, func() bool {
		for _, ev := range s.auditEvents(store.AuditRequest) {
			if ev.Device == "pump-17" && ev.User == "alice" && ev.Reason == "GET /status 200" {
				return true
			}
		}
		return false
	})
}

func TestSubdomainWebSocketEcho(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ws", wsEcho)
	dev := newSubDevice(t, mux)
	s, tok := subStack(t, dev.port)
	addr := s.srv.Addr().String()
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:  &tls.Config{RootCAs: s.pool},
		HandshakeTimeout: 10 * time.Second,
	}
	url := "wss" + strings.TrimPrefix(subURL(s.srv.Addr(), "pump-17", "/ws"), "https")
	c, resp, err := d.Dial(url, http.Header{subHeaderAuth: {"Bearer " + tok}})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	defer c.Close()
	for i := range 20 {
		msg := strings.Repeat(strconv.Itoa(i), 1+i*1000)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("echo %d: %d bytes, %v", i, len(got), err)
		}
	}
	if h := dev.last(t).Header.Get(subHeaderAuth); h != "" {
		t.Errorf("the device saw %s", subHeaderAuth)
	}
}

// TestSubdomainEventStreamArrivesIncrementally: the device writes one event
// and waits until the test has received it before it writes the next, so a
// proxy that buffers would deadlock.
func TestSubdomainEventStreamArrivesIncrementally(t *testing.T) {
	received := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "id: %d\ndata: reading %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case <-received:
			case <-time.After(10 * time.Second):
				return // the test fails on its side
			case <-r.Context().Done():
				return
			}
		}
	})
	dev := newSubDevice(t, mux)
	s, tok := subStack(t, dev.port)
	resp := subGet(t, subClient(s.srv.Addr().String(), s.pool), subURL(s.srv.Addr(), "pump-17", "/events"), tok)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		got := make(chan string, 1)
		go func() {
			var ev strings.Builder
			for {
				line, err := br.ReadString('\n')
				ev.WriteString(line)
				if err != nil || line == "\n" {
					got <- ev.String()
					return
				}
			}
		}()
		select {
		case ev := <-got:
			if want := fmt.Sprintf("id: %d\ndata: reading %d\n\n", i, i); ev != want {
				t.Fatalf("event %d: %q, want %q", i, ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d did not arrive while the device waited for it: buffered", i)
		}
		received <- struct{}{}
	}
}

func TestSubdomainRewritesRedirectsToTheDevicesLocalAddress(t *testing.T) {
	mux := http.NewServeMux()
	var webPort uint16
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// As a device that knows itself only by its local address does.
		http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/login?next=%%2Fstatus", webPort), http.StatusFound)
	})
	dev := newSubDevice(t, mux)
	webPort = dev.port
	s, tok := subStack(t, dev.port)
	resp := subGet(t, subClient(s.srv.Addr().String(), s.pool), subURL(s.srv.Addr(), "pump-17", "/"), tok)
	if want := subURL(s.srv.Addr(), "pump-17", "/login?next=%2Fstatus"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("%d Location %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// subSelfSigned makes a self-signed certificate for name, as a device does.
func subSelfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSubdomainToADeviceServingHTTPS(t *testing.T) {
	dev := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "secure pump page, tls %v, host %s", r.TLS != nil, r.Host)
	}))
	dev.TLS = &tls.Config{Certificates: []tls.Certificate{subSelfSigned(t, "pump-17.local")}}
	dev.StartTLS()
	t.Cleanup(dev.Close)
	port := uint16(dev.Listener.Addr().(*net.TCPAddr).Port)
	s, tok := subStack(t, port)
	c := subClient(s.srv.Addr().String(), s.pool)
	url := subURL(s.srv.Addr(), "pump-17", "/")

	// Plain HTTP to a TLS port: the device answers with a TLS alert or a
	// 400, never the page.
	if resp := subGet(t, c, url, tok); resp.StatusCode == http.StatusOK {
		t.Fatalf("plain HTTP to an HTTPS device answered 200")
	}
	on := true
	if _, err := s.srv.Store().UpdateDevice("pump-17", store.DeviceUpdate{HTTPPort: &port, HTTPTLS: &on}); err != nil {
		t.Fatal(err)
	}
	resp := subGet(t, c, url, tok)
	body, _ := io.ReadAll(resp.Body)
	host := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")
	if want := "secure pump page, tls true, host " + host; resp.StatusCode != http.StatusOK || string(body) != want {
		t.Fatalf("%d %q, want %q", resp.StatusCode, body, want)
	}
	// Through the proxy too: http://pump-17.localhost/ (absolute-form, what a
	// browser with the PAC file sends) speaks TLS to the device's web port.
	presp, err := s.proxyClient("alice", tok).Get("http://pump-17.localhost/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(presp.Body)
	presp.Body.Close()
	if want := "secure pump page, tls true, host pump-17.localhost"; presp.StatusCode != http.StatusOK || string(body) != want {
		t.Fatalf("absolute-form: %d %q, want %q", presp.StatusCode, body, want)
	}
}

// TestSubdomainDownload256MiBWithBoundedMemory streams 256 MiB from a device
// through a real `reflector serve` process and the real agent process, as
// fast as the client reads, and checks the reflector's peak resident memory
// (VmHWM) stays bounded: the proxy must stream, not buffer.
func TestSubdomainDownload256MiBWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB download")
	}
	const (
		size  = 256 << 20
		limit = 120 << 10 // KiB
	)
	zeros := make([]byte, 64<<10)
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for n := 0; n < size; n += len(zeros) {
			if _, err := w.Write(zeros); err != nil {
				return
			}
		}
	}))

	d := deploy(t, fmt.Sprint(web), "--http-port", fmt.Sprint(web))
	srv, tok := d.srv, d.token
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: d.port}
	c := subClient(addr.String(), d.pool)
	pid := srv.cmd.Process.Pid
	before := procStatusKiB(t, pid, "VmRSS")

	start := time.Now()
	resp := subGet(t, c, subURL(addr, "pump-17", "/big"), tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var peakRSS int
	buf := make([]byte, 64<<10)
	var n int64
	for next := int64(0); ; {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if n >= next { // sample every 8 MiB
			peakRSS = max(peakRSS, procStatusKiB(t, pid, "VmRSS"))
			next += 8 << 20
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	elapsed := time.Since(start)
	if n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	hwm := procStatusKiB(t, pid, "VmHWM")
	t.Logf("256 MiB in %v (%.0f MiB/s); reflector RSS %d MiB before, peak sampled %d MiB, VmHWM %d MiB",
		elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(), before>>10, peakRSS>>10, hwm>>10)
	if hwm > limit {
		t.Errorf("reflector VmHWM %d MiB, want below %d MiB", hwm>>10, limit>>10)
	}
}

// procStatusKiB reads a kB field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusKiB(t testing.TB, pid int, field string) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
