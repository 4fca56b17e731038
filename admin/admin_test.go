package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

const (
	domain    = "devices.example.com"
	port      = "8443"
	adminHost = domain + ":" + port
)

// fixture is an Admin over a real store and guard: alice (a user in group
// g, reaching pump-1 and pump-2), bob (alice's groups, with TOTP) and the
// devices pump-1, pump-2 (group g), other (group h) and off (g, disabled).
type fixture struct {
	t     *testing.T
	st    *store.Store
	a     *Admin
	now   time.Time
	token string // alice's API token
	totp  string // bob's TOTP secret
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.AddGroup(store.Group{Name: "g"}))
	must(st.AddGroup(store.Group{Name: "h"}))
	must(st.AddUser("alice", "alice-pass", store.RoleUser, []string{"g"}))
	must(st.AddUser("bob", "bob-pass", store.RoleUser, []string{"g"}))
	for _, d := range []store.Device{
		{ID: "pump-1", Name: "Pump one", Groups: []string{"g"}},
		{ID: "pump-2", Groups: []string{"g"}},
		{ID: "other", Groups: []string{"h"}},
		{ID: "off", Groups: []string{"g"}},
	} {
		_, err := st.AddDevice(d)
		must(err)
	}
	must(st.SetDeviceDisabled("off", true))
	token, _, err := st.CreateToken(store.Token{User: "alice", Name: "script"})
	must(err)
	raw, err := st.BeginTOTP("bob", "")
	must(err)
	u, err := url.Parse(raw)
	must(err)
	secret := u.Query().Get("secret")
	code, err := totp.GenerateCode(secret, time.Now())
	must(err)
	must(st.ConfirmTOTP("bob", code))

	g := auth.NewGuard(st, auth.NewLimiter(auth.LimiterConfig{}), nil)
	a, err := New(Config{Domain: domain, Port: port, Store: st, Guard: g})
	must(err)
	f := &fixture{t: t, st: st, a: a, now: time.Now(), token: token, totp: secret}
	a.now = func() time.Time { return f.now }
	return f
}

// request builds a request to host (the admin host or a device's), from a
// browser on the admin host's page unless the caller changes the headers.
func request(method, host, target string, form url.Values) *http.Request {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://"+host+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return r
}

// serve runs r through the admin host.
func (f *fixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.a.ServeHTTP(w, r)
	return w
}

// device runs r through DeviceAuth for device.
func (f *fixture) device(r *http.Request, device string) (*httptest.ResponseRecorder, store.Credential, bool) {
	w := httptest.NewRecorder()
	cred, ok := f.a.DeviceAuth(w, r, device)
	return w, cred, ok
}

// login signs alice in with her password and returns the session token.
func (f *fixture) login(user, password string) string {
	f.t.Helper()
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {user}, "password": {password}}))
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("login %s: status %d: %s", user, w.Code, w.Body)
	}
	c := responseCookie(f.t, w, SessionCookie)
	return c.Value
}

// handoff asks the admin host, with session, for a hand-off to device and
// returns the callback URL it redirects to.
func (f *fixture) handoff(session, device, next string) *url.URL {
	f.t.Helper()
	r := request("GET", adminHost, "/auth/handoff?device="+device+"&state="+testState+"&next="+url.QueryEscape(next), nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: session})
	w := f.serve(r)
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("hand-off to %s: status %d: %s", device, w.Code, w.Body)
	}
	u, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

// testState is the hand-off state of the tests' browser.
const testState = "dGVzdC1zdGF0ZS0xMjM0NQ"

// callback is a request for a hand-off's callback URL on host, from the
// browser whose state is testState.
func callback(host string, cb *url.URL) *http.Request {
	return withCookie(request("GET", host, cb.RequestURI(), nil), StateCookie, testState)
}

// deviceSession runs a whole hand-off to device and returns the device
// session's token.
func (f *fixture) deviceSession(device string) string {
	f.t.Helper()
	cb := f.handoff(f.login("alice", "alice-pass"), device, "/")
	w, _, ok := f.device(callback(cb.Host, cb), device)
	if ok || w.Code != http.StatusSeeOther {
		f.t.Fatalf("callback: status %d", w.Code)
	}
	return responseCookie(f.t, w, DeviceCookie).Value
}

// responseCookie returns the cookie called name that w sets, checking the
// attributes every session cookie must have.
func responseCookie(t *testing.T, w *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	for _, line := range w.Header().Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != name {
			continue
		}
		lower := strings.ToLower(line)
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" ||
			strings.Contains(lower, "domain=") {
			t.Fatalf("cookie %q: want HttpOnly; Secure; SameSite=Lax; Path=/ and no Domain", line)
		}
		return c
	}
	t.Fatalf("no %s cookie set; headers %v", name, w.Header())
	return nil
}

func withCookie(r *http.Request, name, value string) *http.Request {
	r.AddCookie(&http.Cookie{Name: name, Value: value})
	return r
}

var styleRE = regexp.MustCompile(`(?s)<style>(.*?)</style>`)

// checkPageHeaders checks the security headers of a reflector page, and
// that its inline stylesheet is the one the policy allows by hash.
func checkPageHeaders(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q allows scripts or inline code", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "same-origin" ||
		h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("page headers %v", h)
	}
	m := styleRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatal("no inline stylesheet")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, hash) {
		t.Errorf("the inline stylesheet's hash %s is not in the policy %q", hash, csp)
	}
	if strings.Contains(w.Body.String(), "<script") {
		t.Error("a page has a script")
	}
}

func TestNewChecksTheDomainAndPort(t *testing.T) {
	t.Parallel()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := auth.NewGuard(st, auth.NewLimiter(auth.LimiterConfig{}), nil)
	for _, tc := range []struct {
		domain, port string
		ok           bool
	}{
		{"", "", true},
		{"Devices.Example.com.", "443", true},
		{"localhost", "8443", true},
		{`x");alert(1);("`, "8443", false},
		{"a..b", "8443", false},
		{"localhost", "0", false},
		{"localhost", "x", false},
		{"localhost", "65536", false},
	} {
		_, err := New(Config{Domain: tc.domain, Port: tc.port, Store: st, Guard: g})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q, %q): %v", tc.domain, tc.port, err)
		}
	}
	if _, err := New(Config{Store: st}); err == nil {
		t.Error("New without a guard")
	}
}

func TestEverythingElseOnTheAdminHostIs404(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, target := range []string{"/admin", "/login/", "/.reflector/callback", "/favicon.ico", "/auth/handoff/x"} {
		w := f.serve(request("GET", adminHost, target, nil))
		if w.Code != http.StatusNotFound || strings.Count(strings.TrimSpace(w.Body.String()), "\n") != 0 {
			t.Errorf("GET %s: %d %q, want a one-line 404", target, w.Code, w.Body)
		}
	}
}

func TestStartPageWithoutASessionGoesToTheLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("GET", adminHost, "/", nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("GET /: %d %v", w.Code, w.Header())
	}
	// A cookie naming no session is cleared on the way.
	w = f.serve(withCookie(request("GET", adminHost, "/", nil), SessionCookie, "rfs_bogus"))
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("GET / with a dead cookie: %d %v", w.Code, w.Header())
	}
}

func TestStartPageListsTheUsersDevicesAndThePAC(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(withCookie(request("GET", adminHost, "/", nil), SessionCookie, f.login("alice", "alice-pass")))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /: %d", w.Code)
	}
	checkPageHeaders(t, w)
	body := w.Body.String()
	for _, want := range []string{
		"Signed in as <strong>alice</strong>",
		`href="https://pump-1.devices.example.com:8443/"`,
		`href="https://pump-2.devices.example.com:8443/"`,
		`href="https://devices.example.com:8443/proxy.pac"`,
		`action="/logout"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("start page lacks %s:\n%s", want, body)
		}
	}
	for _, not := range []string{"other.", "off."} {
		if strings.Contains(body, not) {
			t.Errorf("start page links %s, which alice may not use", not)
		}
	}
}

// idleTunnel is a connected device tunnel that opens nothing.
type idleTunnel struct{ done chan struct{} }

func (t *idleTunnel) Open(context.Context, uint16, string) (net.Conn, error) {
	return nil, tunnel.ErrRefused
}
func (t *idleTunnel) Close() error          { return nil }
func (t *idleTunnel) Done() <-chan struct{} { return t.done }

// TestStartPageShowsWhichDevicesAreOnline: with the hub, each device line
// says online (since when, which agent kind) or offline.
func TestStartPageShowsWhichDevicesAreOnline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hub := tunnel.NewHub(nil)
	f.a.cfg.Hub = hub
	hub.Register("pump-1", &idleTunnel{done: make(chan struct{})}, tunnel.DeviceInfo{Kind: webtunnel.Kind})
	w := f.serve(withCookie(request("GET", adminHost, "/", nil), SessionCookie, f.login("alice", "alice-pass")))
	body := w.Body.String()
	for _, re := range []string{
		`<span class="dot on" aria-hidden="true"></span><a href="https://pump-1\.[^"]+">pump-1</a> <span class="small">Pump one</span> <span class="small">— online since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(webtunnel\)</span>`,
		`<span class="dot" aria-hidden="true"></span><a href="https://pump-2\.[^"]+">pump-2</a> <span class="small">— offline</span>`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("start page lacks %s:\n%s", re, body)
		}
	}
}
