package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// The web login over the real server, as a browser meets it: a client with
// a cookie jar asks for https://<device>.localhost:<port>/..., is sent
// through the admin host's hand-off and login, and lands on the device's
// page with a session for that device alone. The devices' web servers
// record what they receive, so the tests can assert that nothing of the
// reflector's — its cookies, its header — ever reaches a device.

// webSite is a stack with two devices (dev1, dev2 of group plant) whose
// agents forward each one's recording web server, and users alice (plant,
// password only) and tina (plant, TOTP).
type webSite struct {
	*stack
	port       string // the TLS listener's, which every URL names
	dev1, dev2 *webDevice
	tinaTOTP   string // tina's TOTP secret
}

// webDevice is a device web UI that records the headers of what it
// receives. GET /set-cookie sets the device's own cookie.
type webDevice struct {
	port uint16
	mu   sync.Mutex
	seen []http.Header
}

const webDeviceCookie = "pump_sid=own-123"

func newWebDevice(t *testing.T, id string) *webDevice {
	d := &webDevice{}
	d.port = webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.seen = append(d.seen, r.Header.Clone())
		d.mu.Unlock()
		if r.URL.Path == "/set-cookie" {
			w.Header().Set("Set-Cookie", webDeviceCookie+"; Path=/; Secure")
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<title>%s</title>device %s page %s", id, id, r.URL.RequestURI())
	}))
	return d
}

// headers returns what the device has received so far.
func (d *webDevice) headers() []http.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]http.Header(nil), d.seen...)
}

// assertNothingOfTheReflector fails if any request the device received
// carried a reflector cookie or header.
func (d *webDevice) assertNothingOfTheReflector(t *testing.T) {
	t.Helper()
	for i, h := range d.headers() {
		for _, c := range h.Values("Cookie") {
			if strings.Contains(c, "reflector_") || strings.Contains(c, "rfs_") {
				t.Errorf("request %d reached the device with the reflector's cookie: Cookie %q", i, c)
			}
		}
		if v := h.Values("X-Reflector-Authorization"); v != nil {
			t.Errorf("request %d reached the device with X-Reflector-Authorization", i)
		}
	}
}

func newWebSite(t *testing.T) *webSite {
	s := newStack(t)
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	w := &webSite{stack: s, port: port, dev1: newWebDevice(t, "dev1"), dev2: newWebDevice(t, "dev2")}
	s.addUser("alice", "alice-pass", false, "plant")
	s.addUser("tina", "tina-pass", false, "plant")
	st := s.srv.Store()
	raw, err := st.BeginTOTP("tina", "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	w.tinaTOTP = u.Query().Get("secret")
	code, _ := totp.GenerateCode(w.tinaTOTP, time.Now())
	if err := st.ConfirmTOTP("tina", code); err != nil {
		t.Fatal(err)
	}
	for id, d := range map[string]*webDevice{"dev1": w.dev1, "dev2": w.dev2} {
		secret := s.addDevice(store.Device{ID: id, Groups: []string{"plant"}})
		s.startAgent(agent.Config{DeviceID: id, Secret: secret, Ports: []uint16{d.port}, HTTPPort: d.port})
	}
	return w
}

// url is https://<host>:<port><path>, host "localhost" (the admin host) or
// "<device>.localhost".
func (w *webSite) url(host, path string) string {
	return "https://" + net.JoinHostPort(host, w.port) + path
}

// client is a browser-like client: a cookie jar, TLS checked against the
// reflector's certificate, every *.localhost name dialled at the server
// (Go does not resolve *.localhost itself). With follow false, redirects
// are returned instead of followed.
func (w *webSite) client(follow bool) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	addr := w.srv.Addr().String()
	c := &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(hostport)
				if host != "localhost" && !strings.HasSuffix(host, ".localhost") {
					return nil, fmt.Errorf("test client: refusing to dial %s", hostport)
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: w.pool},
			ForceAttemptHTTP2: false,
		},
	}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// do sends a request and returns the response with its body read.
func (w *webSite) do(c *http.Client, req *http.Request) (*http.Response, string) {
	w.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("%s %s: body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// get sends a GET, as a browser loading a page when browser is set.
func (w *webSite) get(c *http.Client, u string, browser bool, header ...string) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if browser {
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return w.do(c, req)
}

// post submits a form on the admin host as a browser does, naming the
// page's origin.
func (w *webSite) post(c *http.Client, u string, form url.Values) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	pu, _ := url.Parse(u)
	req.Header.Set("Origin", "https://"+pu.Host)
	return w.do(c, req)
}

var webHiddenRE = regexp.MustCompile(`name="(next|pending)" value="([^"]*)"`)

// hidden returns the hidden form fields of a page.
func hidden(t testing.TB, page string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range webHiddenRE.FindAllStringSubmatch(page, -1) {
		// The template escapes & as &amp; in attributes.
		v.Set(m[1], strings.ReplaceAll(m[2], "&amp;", "&"))
	}
	if v.Get("next") == "" {
		t.Fatalf("no next field in:\n%s", page)
	}
	return v
}

// browse opens a device page with c as a browser would, logging in as
// user when sent to the login page, and returns the final response.
func (w *webSite) browse(c *http.Client, device, path, user, password string) (*http.Response, string) {
	w.t.Helper()
	resp, body := w.get(c, w.url(device+".localhost", path), true)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" || resp.Request.URL.Host != net.JoinHostPort("localhost", w.port) {
		w.t.Fatalf("opening %s without a session ended at %s, status %d, want the login page", path, resp.Request.URL, resp.StatusCode)
	}
	form := hidden(w.t, body)
	form.Set("username", user)
	form.Set("password", password)
	return w.post(c, w.url("localhost", "/login"), form)
}

// handoffLink follows, by hand, a signed-in browser c from device's page
// at path through the hand-off, and returns the callback URL (with its
// one-time code) that the admin host sends it to.
func (w *webSite) handoffLink(c *http.Client, device, path string) string {
	w.t.Helper()
	resp, _ := w.get(c, w.url(device+".localhost", path), true)
	handoff := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(handoff, w.url("localhost", "/auth/handoff?")) {
		w.t.Fatalf("%s%s without a device session: %d, Location %q", device, path, resp.StatusCode, handoff)
	}
	resp, _ = w.get(c, handoff, true)
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback, w.url(device+".localhost", "/.reflector/callback?code=")) {
		w.t.Fatalf("hand-off: %d, Location %q", resp.StatusCode, callback)
	}
	return callback
}

var stateParamRE = regexp.MustCompile(`state=[A-Za-z0-9_-]{22}&`)

// withoutState is a hand-off URL without its state parameter, which is
// random.
func withoutState(u string) string {
	return stateParamRE.ReplaceAllString(u, "")
}

// cookieHeader is the Cookie header c's jar sends to u.
func cookieHeader(c *http.Client, u string) string {
	pu, _ := url.Parse(u)
	var pairs []string
	for _, ck := range c.Jar.Cookies(pu) {
		pairs = append(pairs, ck.Name+"="+ck.Value)
	}
	return strings.Join(pairs, "; ")
}

// assertJSON401 checks a refusal meant for programs.
func (w *webSite) assertJSON401(resp *http.Response, body, wantError string) {
	w.t.Helper()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("WWW-Authenticate") != `Bearer realm="reflector"` {
		w.t.Fatalf("status %d, headers %v, body %q; want 401 JSON with a Bearer challenge", resp.StatusCode, resp.Header, body)
	}
	var got struct{ Error, Login string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		w.t.Fatalf("401 body %q: %v", body, err)
	}
	if got.Error != wantError || got.Login != w.url("localhost", "/login") {
		w.t.Fatalf("401 body %+v, want error %q and the login URL", got, wantError)
	}
}

func TestWebLoginHandsOffToTheDevicePage(t *testing.T) {
	w := newWebSite(t)
	c := w.client(true)
	resp, body := w.browse(c, "dev1", "/status?x=1", "alice", "alice-pass")
	if resp.StatusCode != http.StatusOK || body != "<title>dev1</title>device dev1 page /status?x=1" {
		t.Fatalf("after the login: %s, status %d, %q", resp.Request.URL, resp.StatusCode, body)
	}
	if resp.Request.URL.String() != w.url("dev1.localhost", "/status?x=1") {
		t.Fatalf("landed on %s", resp.Request.URL)
	}

	// The device sets its own cookie; its cookie and its own Authorization
	// reach it unchanged, next to the reflector's session.
	w.get(c, w.url("dev1.localhost", "/set-cookie"), true)
	if ch := cookieHeader(c, w.url("dev1.localhost", "/")); !strings.Contains(ch, "reflector_device") || !strings.Contains(ch, webDeviceCookie) {
		t.Fatalf("the browser sends dev1 %q; want the reflector's and the device's cookies", ch)
	}
	resp, _ = w.get(c, w.url("dev1.localhost", "/api"), false, "Authorization", "Basic ZGV2aWNlOm93bg==")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api with the device session: %d", resp.StatusCode)
	}
	seen := w.dev1.headers()
	last := seen[len(seen)-1]
	if got := last.Values("Cookie"); len(got) != 1 || got[0] != webDeviceCookie {
		t.Errorf("device received Cookie %q, want only its own %q", got, webDeviceCookie)
	}
	if got := last.Get("Authorization"); got != "Basic ZGV2aWNlOm93bg==" {
		t.Errorf("device received Authorization %q, want its own unchanged", got)
	}
	w.dev1.assertNothingOfTheReflector(t)

	// The admin host's session lets the same browser into dev2 without
	// another password: a hand-off only.
	resp, body = w.get(c, w.url("dev2.localhost", "/"), true)
	if resp.StatusCode != http.StatusOK || body != "<title>dev2</title>device dev2 page /" {
		t.Fatalf("dev2 with an admin session: %s %d %q", resp.Request.URL, resp.StatusCode, body)
	}
	w.dev2.assertNothingOfTheReflector(t)

	// The start page lists both devices.
	resp, body = w.get(c, w.url("localhost", "/"), true)
	for _, want := range []string{`<span class="who">(alice)</span>`, w.url("dev1.localhost", "/"), w.url("dev2.localhost", "/"), `href="/proxy.pac"`} {
		if !strings.Contains(body, want) {
			t.Errorf("start page (%d) lacks %s", resp.StatusCode, want)
		}
	}
}

func TestWebLoginAsksATOTPUserForTheCode(t *testing.T) {
	w := newWebSite(t)
	c := w.client(true)
	resp, body := w.browse(c, "dev1", "/", "tina", "tina-pass")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" || !strings.Contains(body, `action="/login/totp"`) {
		t.Fatalf("password of a TOTP user: %s %d\n%s", resp.Request.URL, resp.StatusCode, body)
	}
	if ch := cookieHeader(c, w.url("localhost", "/")); ch != "" {
		t.Fatalf("a session cookie before the code: %q", ch)
	}
	form := hidden(t, body)
	form.Set("code", "000000")
	resp, body = w.post(c, w.url("localhost", "/login/totp"), form)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", resp.StatusCode)
	}
	form = hidden(t, body)
	code, _ := totp.GenerateCode(w.tinaTOTP, time.Now().Add(30*time.Second)) // the current step was spent enabling TOTP
	form.Set("code", code)
	resp, body = w.post(c, w.url("localhost", "/login/totp"), form)
	if resp.StatusCode != http.StatusOK || body != "<title>dev1</title>device dev1 page /" {
		t.Fatalf("after the code: %s %d %q", resp.Request.URL, resp.StatusCode, body)
	}
	w.dev1.assertNothingOfTheReflector(t)
}

func TestDeviceCookieIsRefusedOnAnotherDevice(t *testing.T) {
	w := newWebSite(t)
	c := w.client(true)
	if resp, _ := w.browse(c, "dev1", "/", "alice", "alice-pass"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	stolen := cookieHeader(c, w.url("dev1.localhost", "/"))
	if !strings.Contains(stolen, "reflector_device=rfs_") {
		t.Fatalf("dev1 cookies %q", stolen)
	}
	before := len(w.dev2.headers())
	bare := w.client(false)
	resp, body := w.get(bare, w.url("dev2.localhost", "/"), false, "Cookie", stolen)
	w.assertJSON401(resp, body, "authentication required")
	resp, _ = w.get(bare, w.url("dev2.localhost", "/page"), true, "Cookie", stolen)
	if loc := withoutState(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther ||
		loc != w.url("localhost", "/auth/handoff?device=dev2&next=%2Fpage") {
		t.Fatalf("browser with dev1's cookie on dev2: %d, Location %q", resp.StatusCode, loc)
	}
	// Nor does the admin host take it.
	resp, _ = w.get(bare, w.url("localhost", "/"), true, "Cookie", strings.ReplaceAll(stolen, "reflector_device", "reflector_session"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("dev1's session on the admin host: %d %v", resp.StatusCode, resp.Header)
	}
	if n := len(w.dev2.headers()); n != before {
		t.Fatalf("dev2 received %d requests made with dev1's cookie", n-before)
	}
	// The same cookie still works where it belongs.
	if resp, _ := w.get(bare, w.url("dev1.localhost", "/"), false, "Cookie", stolen); resp.StatusCode != http.StatusOK {
		t.Fatalf("dev1's cookie on dev1: %d", resp.StatusCode)
	}
}

func TestHandoffCodeIsRefusedTheSecondTime(t *testing.T) {
	w := newWebSite(t)
	c := w.client(true)
	if resp, _ := w.browse(c, "dev1", "/", "alice", "alice-pass"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	manual := w.client(false)
	manual.Jar = c.Jar // the signed-in browser, following redirects by hand
	callback := w.handoffLink(manual, "dev2", "/x")
	resp, _ := w.get(manual, callback, true)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/x" {
		t.Fatalf("first use of the code: %d %v", resp.StatusCode, resp.Header)
	}
	// Replayed by anyone, the browser itself included, it is refused.
	for _, cl := range []*http.Client{w.client(false), manual} {
		resp, body := w.get(cl, callback, true)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Set-Cookie") != "" || !strings.Contains(body, "Start again") {
			t.Fatalf("reused code: %d %v", resp.StatusCode, resp.Header)
		}
	}
	// (Expiry after 60 s is tested in the admin package with its clock.)
}

// A user who mails the link of their own hand-off (the callback URL with
// its code) to somebody else cannot sign that person's browser in as
// themselves on the device.
func TestHandoffLinkMadeInAnotherBrowserIsRefused(t *testing.T) {
	w := newWebSite(t)
	w.addUser("mallory", "mallory-pass", false, "plant")
	mallory := w.client(false)
	if resp, _ := w.post(mallory, w.url("localhost", "/login"), url.Values{"username": {"mallory"}, "password": {"mallory-pass"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("mallory's login: %d", resp.StatusCode)
	}
	link := w.handoffLink(mallory, "dev1", "/")

	alice := w.client(false)
	if resp, _ := w.post(alice, w.url("localhost", "/login"), url.Values{"username": {"alice"}, "password": {"alice-pass"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice's login: %d", resp.StatusCode)
	}
	resp, body := w.get(alice, link, true)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "another browser") {
		t.Fatalf("mallory's link in alice's browser: %d\n%s", resp.StatusCode, body)
	}
	if c := cookieHeader(alice, w.url("dev1.localhost", "/")); strings.Contains(c, "reflector_device") {
		t.Fatalf("alice's browser got a device session: %q", c)
	}
	if n := len(w.dev1.headers()); n != 0 {
		t.Fatalf("the device received %d requests", n)
	}
}

func TestUnauthenticatedProgramGets401AndBrowserARedirect(t *testing.T) {
	w := newWebSite(t)
	c := w.client(false)
	resp, body := w.get(c, w.url("dev1.localhost", "/api/v1/status"), false)
	w.assertJSON401(resp, body, "authentication required")
	resp, _ = w.get(c, w.url("dev1.localhost", "/index.html?lang=de"), true)
	if loc := withoutState(resp.Header.Get("Location")); resp.StatusCode != http.StatusSeeOther ||
		loc != w.url("localhost", "/auth/handoff?device=dev1&next=%2Findex.html%3Flang%3Dde") {
		t.Fatalf("browser: %d, Location %q", resp.StatusCode, loc)
	}
	if n := len(w.dev1.headers()); n != 0 {
		t.Fatalf("the device received %d unauthenticated requests", n)
	}
}

func TestBearerHeaderAuthenticatesAndIsRemoved(t *testing.T) {
	w := newWebSite(t)
	tok := w.createToken("--user", "alice", "--name", "script")
	c := w.client(false)
	resp, body := w.get(c, w.url("dev1.localhost", "/api"), false,
		"X-Reflector-Authorization", "Bearer "+tok,
		"Authorization", "Bearer device-own-token",
		"Cookie", "pump_sid=mine; theme=dark")
	if resp.StatusCode != http.StatusOK || body != "<title>dev1</title>device dev1 page /api" {
		t.Fatalf("bearer: %d %q", resp.StatusCode, body)
	}
	seen := w.dev1.headers()
	last := seen[len(seen)-1]
	if last.Get("Authorization") != "Bearer device-own-token" || last.Get("Cookie") != "pump_sid=mine; theme=dark" {
		t.Fatalf("device received Authorization %q, Cookie %q", last.Get("Authorization"), last.Get("Cookie"))
	}
	w.dev1.assertNothingOfTheReflector(t)

	// A wrong bearer is a 401 for programs and browsers alike: never a
	// redirect to a login that a program cannot do.
	resp, body = w.get(c, w.url("dev1.localhost", "/api"), true, "X-Reflector-Authorization", "Bearer rfl_"+strings.Repeat("x", 32))
	w.assertJSON401(resp, body, "invalid token")
	if n := len(w.dev1.headers()); n != len(seen) {
		t.Fatal("the device received a request with a wrong bearer")
	}
}

func TestWebLogoutEndsTheSessions(t *testing.T) {
	w := newWebSite(t)
	c := w.client(true)
	if resp, _ := w.browse(c, "dev1", "/", "alice", "alice-pass"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	adminCookie := cookieHeader(c, w.url("localhost", "/"))
	deviceCookie := cookieHeader(c, w.url("dev1.localhost", "/"))

	// The device session ends on its own host's logout.
	resp, _ := w.post(c, w.url("dev1.localhost", "/.reflector/logout"), url.Values{})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device logout: %d", resp.StatusCode)
	}
	bare := w.client(false)
	resp, body := w.get(bare, w.url("dev1.localhost", "/"), false, "Cookie", deviceCookie)
	w.assertJSON401(resp, body, "authentication required")

	// A logout posted from a device page is refused.
	req, _ := http.NewRequest(http.MethodPost, w.url("localhost", "/logout"), nil)
	req.Header.Set("Origin", w.url("dev1.localhost", ""))
	if resp, _ := w.do(c, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout from a device page: %d", resp.StatusCode)
	}
	if resp, _ := w.get(bare, w.url("localhost", "/"), true, "Cookie", adminCookie); resp.StatusCode != http.StatusOK {
		t.Fatalf("the admin session after a refused logout: %d", resp.StatusCode)
	}

	resp, body = w.post(c, w.url("localhost", "/logout"), url.Values{})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" || !strings.Contains(body, `action="/login"`) {
		t.Fatalf("logout: %s %d", resp.Request.URL, resp.StatusCode)
	}
	if ch := cookieHeader(c, w.url("localhost", "/")); ch != "" {
		t.Fatalf("cookies left after logout: %q", ch)
	}
	// The old cookie, replayed, is dead on the server.
	if resp, _ := w.get(bare, w.url("localhost", "/"), true, "Cookie", adminCookie); resp.StatusCode != http.StatusSeeOther ||
		resp.Header.Get("Location") != "/login" {
		t.Fatalf("the admin cookie after logout: %d", resp.StatusCode)
	}
	// A device needs a new login now.
	resp, _ = w.get(c, w.url("dev1.localhost", "/"), true)
	if resp.Request.URL.Path != "/login" {
		t.Fatalf("a device after logging out ended at %s", resp.Request.URL)
	}
}

func TestLoginRefusesAnOpenRedirect(t *testing.T) {
	w := newWebSite(t)
	for _, next := range []string{"https://example.com/", "//example.com/", "/\\example.com/", "https://dev1.localhost:1/"} {
		c := w.client(false)
		resp, _ := w.post(c, w.url("localhost", "/login"), url.Values{"username": {"alice"}, "password": {"alice-pass"}, "next": {next}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("login with next %q: %d, Location %q", next, resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = w.get(c, w.url("localhost", "/login?next="+url.QueryEscape(next)), true)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("signed-in login page with next %q: %d, Location %q", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A device subdomain of this reflector is a fine next.
	c := w.client(false)
	next := w.url("dev1.localhost", "/x")
	resp, _ := w.post(c, w.url("localhost", "/login"), url.Values{"username": {"alice"}, "password": {"alice-pass"}, "next": {next}})
	if resp.Header.Get("Location") != next {
		t.Fatalf("login with next %q: Location %q", next, resp.Header.Get("Location"))
	}
}

func TestPACFileNamesTheReflector(t *testing.T) {
	w := newWebSite(t)
	resp, body := w.get(w.client(false), w.url("localhost", "/proxy.pac"), false)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" ||
		!strings.Contains(body, `dnsDomainIs(host, ".localhost")`) || !strings.Contains(body, `"HTTPS localhost:`+w.port+`"`) {
		t.Fatalf("PAC: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
}
