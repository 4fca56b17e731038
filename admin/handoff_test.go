package admin

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

const pump1 = "pump-1." + adminHost

func TestHandoffWithoutASessionGoesToTheLoginAndBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	target := "/auth/handoff?device=pump-1&next=%2Fstatus"
	w := f.serve(request("GET", adminHost, target, nil))
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || loc != "/login?next="+url.QueryEscape(target) {
		t.Fatalf("hand-off without a session: %d %q", w.Code, loc)
	}
	// The login form carries the hand-off on.
	u, _ := url.Parse(loc)
	if got := f.a.loginNext(u.Query().Get("next")); got != target {
		t.Fatalf("login next %q, want %q", got, target)
	}
}

func TestHandoffRedirectsToTheDeviceCallbackWithAOneTimeCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cb := f.handoff(f.login("alice", "alice-pass"), "pump-1", "/status?x=1")
	q := cb.Query()
	if cb.Scheme != "https" || cb.Host != pump1 || cb.Path != "/.reflector/callback" || q.Get("next") != "/status?x=1" {
		t.Fatalf("callback URL %s", cb)
	}
	if code := q.Get("code"); len(code) < 22 { // ≥ 128 bits in base64
		t.Fatalf("code %q is short", code)
	}
	// The next of a hand-off is a path on the device, nothing else.
	cb = f.handoff(f.login("alice", "alice-pass"), "pump-1", "https://evil.example/")
	if cb.Query().Get("next") != "/" {
		t.Fatalf("hand-off next to another site: %s", cb)
	}
}

func TestHandoffRefusesDevicesTheUserMayNotUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.login("alice", "alice-pass")
	for _, tc := range []struct {
		device string
		status int
	}{
		{"other", http.StatusForbidden},
		{"off", http.StatusForbidden},
		{"nope", http.StatusNotFound},
		{"", http.StatusNotFound},
		{"<script>", http.StatusNotFound},
	} {
		r := withCookie(request("GET", adminHost, "/auth/handoff?device="+url.QueryEscape(tc.device), nil), SessionCookie, tok)
		w := f.serve(r)
		if w.Code != tc.status {
			t.Errorf("hand-off to %q: %d, want %d", tc.device, w.Code, tc.status)
			continue
		}
		checkPageHeaders(t, w)
		if strings.Contains(w.Body.String(), "<script>") {
			t.Errorf("hand-off to %q repeats it", tc.device)
		}
	}
	if n := f.a.handoffs.len(); n != 0 {
		t.Fatalf("%d codes made for refused hand-offs", n)
	}
}

func TestCallbackSetsAHostOnlyDeviceCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cb := f.handoff(f.login("alice", "alice-pass"), "pump-1", "/status?x=1")
	w, _, ok := f.device(callback(cb.Host, cb), "pump-1")
	if ok || w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/status?x=1" {
		t.Fatalf("callback: ok %v, %d %v", ok, w.Code, w.Header())
	}
	if w.Header().Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("callback Referrer-Policy %q: the URL holds the code", w.Header().Get("Referrer-Policy"))
	}
	c := responseCookie(t, w, DeviceCookie)
	sess, u, err := f.st.CheckSession(c.Value, "pump-1")
	if err != nil || u.Name != "alice" || sess.Device != "pump-1" {
		t.Fatalf("device session: %+v %v %v", sess, u, err)
	}
	if _, _, err := f.st.CheckSession(c.Value, ""); err == nil {
		t.Fatal("a device session is valid on the admin host")
	}
}

func TestHandoffCodeIsSingleUseBoundToItsDeviceAndExpires(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	session := f.login("alice", "alice-pass")
	redeem := func(cb *url.URL, device string) int {
		w, _, ok := f.device(callback(device+"."+adminHost, cb), device)
		if ok {
			t.Fatal("the callback returned a credential")
		}
		if w.Code == http.StatusForbidden {
			checkPageHeaders(t, w)
			if !strings.Contains(w.Body.String(), "Start again") || w.Header().Get("Set-Cookie") != "" {
				t.Errorf("refused callback:\n%s", w.Body)
			}
		}
		return w.Code
	}

	cb := f.handoff(session, "pump-1", "/")
	if got := redeem(cb, "pump-1"); got != http.StatusSeeOther {
		t.Fatalf("first use: %d", got)
	}
	if got := redeem(cb, "pump-1"); got != http.StatusForbidden {
		t.Fatalf("second use: %d, want 403", got)
	}

	// A code taken to another device is refused there, and is spent.
	cb = f.handoff(session, "pump-1", "/")
	if got := redeem(cb, "pump-2"); got != http.StatusForbidden {
		t.Fatalf("pump-1's code on pump-2: %d, want 403", got)
	}
	if got := redeem(cb, "pump-1"); got != http.StatusForbidden {
		t.Fatalf("pump-1's code after a try on pump-2: %d, want 403", got)
	}

	cb = f.handoff(session, "pump-1", "/")
	f.now = f.now.Add(59 * time.Second)
	if got := redeem(cb, "pump-1"); got != http.StatusSeeOther {
		t.Fatalf("code after 59 s: %d", got)
	}
	cb = f.handoff(session, "pump-1", "/")
	f.now = f.now.Add(60 * time.Second)
	if got := redeem(cb, "pump-1"); got != http.StatusForbidden {
		t.Fatalf("code after 60 s: %d, want 403", got)
	}

	for _, bad := range []string{"", "x", strings.Repeat("A", 43)} {
		u := &url.URL{Path: "/.reflector/callback", RawQuery: "code=" + bad}
		if got := redeem(u, "pump-1"); got != http.StatusForbidden {
			t.Errorf("made-up code %q: %d", bad, got)
		}
	}
	// Only GET redeems: a code is not spent by a stray POST or HEAD.
	cb = f.handoff(session, "pump-1", "/")
	w, _, _ := f.device(request("POST", pump1, cb.RequestURI(), url.Values{}), "pump-1")
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST callback: %d", w.Code)
	}
	if got := redeem(cb, "pump-1"); got != http.StatusSeeOther {
		t.Fatalf("code after a POST: %d", got)
	}
}

func TestCallbackNextStaysOnTheDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	session := f.login("alice", "alice-pass")
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		cb := f.handoff(session, "pump-1", "/")
		q := cb.Query()
		q.Set("next", next) // as if the URL were edited on the way
		cb.RawQuery = q.Encode()
		w, _, _ := f.device(callback(pump1, cb), "pump-1")
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
			t.Errorf("callback next %q: %d %q", next, w.Code, w.Header().Get("Location"))
		}
	}
}

func TestDeviceSessionAuthenticatesAndItsCookieIsRemoved(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.deviceSession("pump-1")
	r := request("GET", pump1, "/page", nil)
	r.Header["Cookie"] = []string{`lang=de; ` + DeviceCookie + `=` + tok + `;sid="a b";  theme=dark`, DeviceCookie + "=" + tok}
	r.Header.Set("Authorization", "Basic ZGV2aWNlOnBhc3M=")
	w, cred, ok := f.device(r, "pump-1")
	if !ok || cred.User.Name != "alice" || cred.TokenID != "" {
		t.Fatalf("device session: ok %v, %+v, %d %s", ok, cred, w.Code, w.Body)
	}
	if got := r.Header["Cookie"]; len(got) != 1 || got[0] != `lang=de;sid="a b";  theme=dark` {
		t.Fatalf("Cookie after DeviceAuth: %q", got)
	}
	if r.Header.Get("Authorization") != "Basic ZGV2aWNlOnBhc3M=" {
		t.Fatal("the device's own Authorization header was touched")
	}
	if len(w.Header()) != 0 || w.Body.Len() != 0 {
		t.Fatalf("DeviceAuth wrote to an authenticated request: %v", w.Header())
	}
}

func TestDeviceCookieOfAnotherDeviceIsWorthless(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.deviceSession("pump-1")
	api := withCookie(request("GET", "pump-2."+adminHost, "/api", nil), DeviceCookie, tok)
	w, _, ok := f.device(api, "pump-2")
	if ok || w.Code != http.StatusUnauthorized {
		t.Fatalf("pump-1's cookie on pump-2: ok %v, %d", ok, w.Code)
	}
	// The admin host does not take it either.
	w = f.serve(withCookie(request("GET", adminHost, "/", nil), SessionCookie, tok))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("a device cookie on the admin host: %d", w.Code)
	}
	// Nor does a device take the admin session.
	admin := f.login("alice", "alice-pass")
	w, _, ok = f.device(withCookie(request("GET", pump1, "/", nil), DeviceCookie, admin), "pump-1")
	if ok || w.Code != http.StatusUnauthorized {
		t.Fatalf("the admin session as a device cookie: ok %v, %d", ok, w.Code)
	}
}

func TestUnauthenticatedBrowserIsRedirectedAndProgramGets401JSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	browser := request("GET", pump1, "/status?x=1&y=%2F", nil)
	browser.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	w, _, ok := f.device(browser, "pump-1")
	state := responseCookie(t, w, StateCookie)
	want := "https://devices.example.com:8443/auth/handoff?device=pump-1&state=" + state.Value + "&next=" + url.QueryEscape("/status?x=1&y=%2F")
	if ok || w.Code != http.StatusSeeOther || w.Header().Get("Location") != want {
		t.Fatalf("browser: ok %v, %d, Location %q, want %q", ok, w.Code, w.Header().Get("Location"), want)
	}
	if !validState(state.Value) || state.MaxAge <= 0 || state.MaxAge > 3600 {
		t.Fatalf("state cookie %+v", state)
	}
	// The same browser again (another tab) keeps its state.
	w, _, _ = f.device(withCookie(browser.Clone(browser.Context()), StateCookie, state.Value), "pump-1")
	if w.Header().Get("Set-Cookie") != "" || !strings.Contains(w.Header().Get("Location"), "state="+state.Value+"&") {
		t.Fatalf("second navigation: Set-Cookie %q, Location %q", w.Header().Get("Set-Cookie"), w.Header().Get("Location"))
	}

	for _, r := range []*http.Request{
		request("GET", pump1, "/api/status", nil),
		request("POST", pump1, "/form", url.Values{}), // a form post cannot be replayed after a redirect
		withCookie(request("GET", pump1, "/api/status", nil), DeviceCookie, "rfs_bogus"),
	} {
		if r.Method == "POST" {
			r.Header.Set("Accept", "text/html")
		}
		w, _, ok := f.device(r, "pump-1")
		if ok || w.Code != http.StatusUnauthorized {
			t.Fatalf("%s %s: ok %v, %d", r.Method, r.URL, ok, w.Code)
		}
		checkJSON401(t, w, "authentication required")
	}
}

// checkJSON401 checks a refusal for programs: JSON saying why and where to
// log in, a Bearer challenge, no redirect.
func checkJSON401(t *testing.T, w *httptest.ResponseRecorder, wantError string) {
	t.Helper()
	h := w.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("WWW-Authenticate") != `Bearer realm="reflector"` || h.Get("Location") != "" {
		t.Fatalf("401 headers %v", h)
	}
	var got struct{ Error, Login string }
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("401 body %q: %v", w.Body, err)
	}
	if got.Error != wantError || got.Login != "https://devices.example.com:8443/login" {
		t.Fatalf("401 body %+v", got)
	}
}

func TestBearerHeaderAuthenticatesAndIsRemovedWithTheCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	devTok := f.deviceSession("pump-2") // another device's cookie, which must go too
	r := request("GET", pump1, "/api", nil)
	r.Header.Set(AuthHeader, "Bearer "+f.token)
	r.Header.Set("Authorization", "Bearer device-own-token")
	r.Header.Set("Cookie", "a=1; "+DeviceCookie+"="+devTok)
	w, cred, ok := f.device(r, "pump-1")
	if !ok || cred.User.Name != "alice" || cred.TokenID == "" {
		t.Fatalf("bearer: ok %v, %+v, %d %s", ok, cred, w.Code, w.Body)
	}
	if r.Header.Values(AuthHeader) != nil || r.Header.Get("Cookie") != "a=1" || r.Header.Get("Authorization") != "Bearer device-own-token" {
		t.Fatalf("headers after DeviceAuth: %v", r.Header)
	}

	// Scheme names are case-insensitive.
	r = request("GET", pump1, "/api", nil)
	r.Header.Set(AuthHeader, "bearer  "+f.token)
	if _, _, ok := f.device(r, "pump-1"); !ok {
		t.Fatal("lower-case bearer refused")
	}
}

func TestBadBearerIs401JSONEvenForBrowsersAndWithAGoodCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cookie := f.deviceSession("pump-1")
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"wrong token", []string{"Bearer rfl_" + strings.Repeat("A", 32)}, "invalid token"},
		{"not a token", []string{"Bearer nonsense"}, "invalid token"},
		{"basic", []string{"Basic YWxpY2U6YWxpY2UtcGFzcw=="}, "malformed " + AuthHeader + ": want one Bearer token"},
		{"empty", []string{"Bearer "}, "malformed " + AuthHeader + ": want one Bearer token"},
		{"two", []string{"Bearer " + f.token, "Bearer " + f.token}, "malformed " + AuthHeader + ": want one Bearer token"},
	} {
		r := withCookie(request("GET", pump1, "/", nil), DeviceCookie, cookie)
		r.Header.Set("Accept", "text/html")
		r.Header[AuthHeader] = tc.values
		w, _, ok := f.device(r, "pump-1")
		if ok || w.Code != http.StatusUnauthorized {
			t.Errorf("%s: ok %v, %d", tc.name, ok, w.Code)
			continue
		}
		checkJSON401(t, w, tc.want)
	}
}

func TestWrongBearersFromOneAddressAreThrottled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var w *httptest.ResponseRecorder
	for range 6 {
		r := request("GET", pump1, "/", nil)
		r.Header.Set(AuthHeader, "Bearer rfl_"+strings.Repeat("B", 32))
		w, _, _ = f.device(r, "pump-1")
	}
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("sixth wrong bearer: %d %v", w.Code, w.Header())
	}
	// The right token still passes (tokens are always checked).
	r := request("GET", pump1, "/", nil)
	r.Header.Set(AuthHeader, "Bearer "+f.token)
	if _, _, ok := f.device(r, "pump-1"); !ok {
		t.Fatal("right token from a locked-out address refused")
	}
}

func TestDeviceLogoutEndsTheDeviceSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.deviceSession("pump-1")
	w, _, ok := f.device(withCookie(request("GET", pump1, "/.reflector/logout", nil), DeviceCookie, tok), "pump-1")
	if ok || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `action="/.reflector/logout"`) {
		t.Fatalf("GET logout: %d\n%s", w.Code, w.Body)
	}
	checkPageHeaders(t, w)
	if _, _, err := f.st.CheckSession(tok, "pump-1"); err != nil {
		t.Fatalf("GET ended the session: %v", err)
	}

	r := withCookie(request("POST", pump1, "/.reflector/logout", url.Values{}), DeviceCookie, tok)
	r.Header.Set("Origin", "https://pump-2."+adminHost)
	if w, _, _ := f.device(r, "pump-1"); w.Code != http.StatusForbidden {
		t.Fatalf("logout posted from another device: %d", w.Code)
	}
	r = withCookie(request("POST", pump1, "/.reflector/logout", url.Values{}), DeviceCookie, tok)
	r.Header.Set("Origin", "https://"+pump1)
	w, _, ok = f.device(r, "pump-1")
	if ok || w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Set-Cookie"), DeviceCookie+"=;") {
		t.Fatalf("POST logout: %d %v", w.Code, w.Header())
	}
	if _, _, err := f.st.CheckSession(tok, "pump-1"); err == nil {
		t.Fatal("the device session lives on after logout")
	}
	w, _, ok = f.device(withCookie(request("GET", pump1, "/api", nil), DeviceCookie, tok), "pump-1")
	if ok || w.Code != http.StatusUnauthorized {
		t.Fatalf("cookie after logout: ok %v, %d", ok, w.Code)
	}
}

func TestReflectorPathsOnADeviceNeverReachIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.deviceSession("pump-1")
	for _, p := range []string{"/.reflector", "/.reflector/", "/.reflector/other", "/.reflector/callback/x"} {
		w, _, ok := f.device(withCookie(request("GET", pump1, p, nil), DeviceCookie, tok), "pump-1")
		if ok || w.Code != http.StatusNotFound {
			t.Errorf("GET %s: ok %v, %d", p, ok, w.Code)
		}
	}
	if _, _, ok := f.device(withCookie(request("GET", pump1, "/.reflectorx", nil), DeviceCookie, tok), "pump-1"); !ok {
		t.Error("GET /.reflectorx is the device's")
	}
	// noVNC's bridge (proxy.ServeWebsockify) authenticates here.
	if _, cred, ok := f.device(withCookie(request("GET", pump1, "/.reflector/websockify", nil), DeviceCookie, tok), "pump-1"); !ok || cred.User.Name == "" {
		t.Error("GET /.reflector/websockify with a device session is not authenticated")
	}
	// So does noVNC's app (ServeNoVNC).
	if _, cred, ok := f.device(withCookie(request("GET", pump1, "/.reflector/novnc/vnc.html", nil), DeviceCookie, tok), "pump-1"); !ok || cred.User.Name == "" {
		t.Error("GET /.reflector/novnc/vnc.html with a device session is not authenticated")
	}
}

// A hand-off link made in one browser (say, by a user who then mails it to
// another) must not sign a second browser in as its maker.
func TestHandoffCodeFromAnotherBrowserIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	session := f.login("alice", "alice-pass")
	for name, state := range map[string]string{"another state": "b3RoZXItYnJvd3Nlci0xMg", "no state": ""} {
		cb := f.handoff(session, "pump-1", "/")
		r := request("GET", pump1, cb.RequestURI(), nil)
		if state != "" {
			r = withCookie(r, StateCookie, state)
		}
		w, _, ok := f.device(r, "pump-1")
		if ok || w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "another browser") {
			t.Fatalf("%s: ok %v, %d\n%s", name, ok, w.Code, w.Body)
		}
		if strings.Contains(w.Header().Get("Set-Cookie"), DeviceCookie) {
			t.Fatalf("%s: a device session was set", name)
		}
		// The code is spent: its maker's browser cannot use it either.
		if w, _, _ := f.device(callback(pump1, cb), "pump-1"); w.Code != http.StatusForbidden {
			t.Fatalf("%s: the refused code then worked: %d", name, w.Code)
		}
	}
	events, err := f.st.AuditEvents(store.AuditFilter{Kind: store.AuditLogin})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range events {
		if !e.OK && strings.Contains(e.Reason, "another browser") {
			refused++
		}
	}
	if refused != 2 {
		t.Fatalf("%d audited refusals, want 2", refused)
	}
}

func TestHandoffWithoutStateStartsOnTheDevice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := withCookie(request("GET", adminHost, "/auth/handoff?device=pump-1&next=%2Fstatus", nil), SessionCookie, f.login("alice", "alice-pass"))
	w := f.serve(r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://"+pump1+"/status" {
		t.Fatalf("hand-off without state: %d %q", w.Code, w.Header().Get("Location"))
	}
	if n := f.a.handoffs.len(); n != 0 {
		t.Fatalf("%d codes made without a state", n)
	}
}

// TestDeviceCookieDoesNotActForAnotherSitesPage: device hosts are one site,
// so SameSite=Lax sends a device's cookie along with a form, fetch or
// WebSocket from another device's page. Such requests must not act with
// the user's device session (issue 15: a POST from evil-dev reached dev1
// with alice's cookie). Navigations, same-origin requests, programs without
// an Origin and bearer-token programs are unaffected.
func TestDeviceCookieDoesNotActForAnotherSitesPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.deviceSession("pump-1")
	evil := "https://evil-dev." + domain + ":" + port
	upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		bearer  bool
		ok      bool
	}{
		{"POST from another device's page", "POST", map[string]string{"Origin": evil, "Sec-Fetch-Site": "same-site"}, false, false},
		{"POST from another site", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, false, false},
		{"DELETE with a foreign Origin only", "DELETE", map[string]string{"Origin": evil}, false, false},
		{"POST from an opaque origin", "POST", map[string]string{"Origin": "null"}, false, false},
		{"WebSocket from another device's page", "GET", merge(upgrade, map[string]string{"Origin": evil}), false, false},
		{"WebSocket from another site", "GET", merge(upgrade, map[string]string{"Sec-Fetch-Site": "cross-site"}), false, false},
		{"POST from the device's own page", "POST", map[string]string{"Origin": "https://" + pump1, "Sec-Fetch-Site": "same-origin"}, false, true},
		{"WebSocket from the device's own page", "GET", merge(upgrade, map[string]string{"Origin": "https://" + pump1}), false, true},
		{"POST from a program", "POST", nil, false, true},
		{"a link from another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, false, true},
		{"bearer program with a foreign Origin", "POST", map[string]string{"Origin": evil, "Sec-Fetch-Site": "cross-site"}, true, true},
	} {
		r := request(tc.method, pump1, "/api/valve", nil)
		if tc.bearer {
			r.Header.Set(AuthHeader, "Bearer "+f.token)
		} else {
			r = withCookie(r, DeviceCookie, tok)
		}
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		w, _, ok := f.device(r, "pump-1")
		if ok != tc.ok || (!ok && w.Code != http.StatusForbidden) {
			t.Errorf("%s: ok %v, %d %s; want ok %v (else 403)", tc.name, ok, w.Code, w.Body, tc.ok)
		}
	}
	evs, err := f.st.AuditEvents(store.AuditFilter{Kind: store.AuditRequest})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, ev := range evs {
		if ev.User == "alice" && ev.Device == "pump-1" && !ev.OK && strings.Contains(ev.Reason, "another site") {
			refused++
		}
	}
	if refused != 6 {
		t.Errorf("%d refusals audited; want 6: %+v", refused, evs)
	}
}

func merge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}
