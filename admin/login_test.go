package admin

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/store"
)

var pendingRE = regexp.MustCompile(`name="pending" value="([^"]+)"`)

// pendingToken returns the pending-login token of a TOTP form.
func pendingToken(t *testing.T, body string) string {
	t.Helper()
	m := pendingRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no pending-login token in:\n%s", body)
	}
	return m[1]
}

// code is bob's TOTP code for the step after now (the current one was
// spent enabling TOTP), shifted by steps.
func (f *fixture) code(steps int) string {
	f.t.Helper()
	c, err := totp.GenerateCode(f.totp, time.Now().Add(time.Duration(1+steps)*30*time.Second))
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func TestLoginFormIsAPlainHTMLForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("GET", adminHost, "/login?next=%2Fauth%2Fhandoff%3Fdevice%3Dpump-1%26next%3D%252F", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /login: %d", w.Code)
	}
	checkPageHeaders(t, w)
	body := w.Body.String()
	for _, want := range []string{
		`<form method="post" action="/login">`,
		`name="username"`, `name="password"`, `type="password"`,
		`name="next" value="/auth/handoff?device=pump-1&amp;next=%2F"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("login form lacks %s:\n%s", want, body)
		}
	}
}

func TestLoginSetsAHostOnlySessionCookieAndGoesToNext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	next := "/auth/handoff?device=pump-1&next=%2Fstatus%3Fx%3D1"
	w := f.serve(request("POST", adminHost, "/login",
		url.Values{"username": {"alice"}, "password": {"alice-pass"}, "next": {next}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != next {
		t.Fatalf("login: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	c := responseCookie(t, w, SessionCookie)
	if !strings.HasPrefix(c.Value, store.SessionPrefix) || c.MaxAge != 0 || !c.Expires.IsZero() {
		t.Fatalf("session cookie %+v: want a browser-session cookie holding a session token", c)
	}
	if _, _, err := f.st.CheckSession(c.Value, ""); err != nil {
		t.Fatalf("the cookie's session: %v", err)
	}
	// Signed in, the login form sends the browser on.
	w = f.serve(withCookie(request("GET", adminHost, "/login?next=%2F", nil), SessionCookie, c.Value))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("GET /login signed in: %d %v", w.Code, w.Header())
	}
}

func TestLoginReplacesTheSessionTheBrowserHeld(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	old := f.login("alice", "alice-pass")
	r := withCookie(request("POST", adminHost, "/login", url.Values{"username": {"alice"}, "password": {"alice-pass"}}),
		SessionCookie, old)
	if w := f.serve(r); w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", w.Code)
	}
	if _, _, err := f.st.CheckSession(old, ""); err == nil {
		t.Fatal("the session held before the login still lives")
	}
}

func TestWrongPasswordShowsTheFormAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong-pass"}, {"nobody", "alice-pass"}, {"", ""}, {"alice", f.token},
	} {
		w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {tc.user}, "password": {tc.password}, "next": {"/x"}}))
		body := w.Body.String()
		if w.Code != http.StatusUnauthorized || !strings.Contains(body, "Wrong user name or password.") ||
			!strings.Contains(body, `name="next" value="/x"`) || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("login %q: %d %v\n%s", tc.user, w.Code, w.Header(), body)
		}
		if tc.password != "" && strings.Contains(body, tc.password) {
			t.Errorf("the page repeats the password")
		}
	}
}

func TestLockedOutLoginIs429WithRetryAfter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range 5 {
		f.serve(request("POST", adminHost, "/login", url.Values{"username": {"alice"}, "password": {"guess-pass"}}))
	}
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {"alice"}, "password": {"alice-pass"}}))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("right password while locked out: %d %v", w.Code, w.Header())
	}
	checkPageHeaders(t, w)
}

func TestPasswordInTheQueryIsNotRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("POST", adminHost, "/login?username=alice&password=alice-pass", url.Values{}))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("credentials in the URL: %d, want 401", w.Code)
	}
}

func TestTOTPUserGetsACodeFormThenASession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {"bob"}, "password": {"bob-pass"}, "next": {"/x"}}))
	if w.Code != http.StatusOK || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("password of a TOTP user: %d %v", w.Code, w.Header())
	}
	checkPageHeaders(t, w)
	body := w.Body.String()
	if !strings.Contains(body, `action="/login/totp"`) || !strings.Contains(body, `name="code"`) || !strings.Contains(body, `name="next" value="/x"`) {
		t.Fatalf("code form:\n%s", body)
	}
	pending := pendingToken(t, body)

	// A wrong code: the form again, with a new pending token; the old one
	// is spent.
	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {"000000"}, "next": {"/x"}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "Wrong code") {
		t.Fatalf("wrong code: %d\n%s", w.Code, w.Body)
	}
	retry := pendingToken(t, w.Body.String())
	if retry == pending {
		t.Fatal("the pending token was reused")
	}
	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {f.code(0)}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `action="/login"`) {
		t.Fatalf("spent pending token: %d\n%s", w.Code, w.Body)
	}

	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {retry}, "code": {f.code(0)}, "next": {"/x"}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/x" {
		t.Fatalf("right code: %d %v\n%s", w.Code, w.Header(), w.Body)
	}
	_, u, err := f.st.CheckSession(responseCookie(t, w, SessionCookie).Value, "")
	if err != nil || u.Name != "bob" {
		t.Fatalf("session of the TOTP login: %v %v", u, err)
	}
}

func TestPendingLoginExpiresAfterFiveMinutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {"bob"}, "password": {"bob-pass"}}))
	pending := pendingToken(t, w.Body.String())
	// Retries do not extend it.
	f.now = f.now.Add(4 * time.Minute)
	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {"000000"}}))
	pending = pendingToken(t, w.Body.String())
	f.now = f.now.Add(time.Minute + time.Second)
	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {f.code(0)}}))
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "expired") {
		t.Fatalf("code after five minutes: %d\n%s", w.Code, w.Body)
	}
}

func TestWrongCodesLockTheTOTPFormOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {"bob"}, "password": {"bob-pass"}}))
	pending := pendingToken(t, w.Body.String())
	for i := range 5 {
		w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {"00000" + string(rune('0'+i))}}))
		pending = pendingToken(t, w.Body.String())
	}
	w = f.serve(request("POST", adminHost, "/login/totp", url.Values{"pending": {pending}, "code": {f.code(0)}}))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("right code while locked out: %d %v", w.Code, w.Header())
	}
}

func TestLogoutEndsTheSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tok := f.login("alice", "alice-pass")
	w := f.serve(withCookie(request("GET", adminHost, "/logout", nil), SessionCookie, tok))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<form method="post" action="/logout">`) {
		t.Fatalf("GET /logout: %d\n%s", w.Code, w.Body)
	}
	if _, _, err := f.st.CheckSession(tok, ""); err != nil {
		t.Fatalf("GET /logout ended the session: %v", err)
	}
	r := withCookie(request("POST", adminHost, "/logout", nil), SessionCookie, tok)
	r.Header.Set("Origin", "https://"+adminHost)
	w = f.serve(r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" ||
		!strings.Contains(w.Header().Get("Set-Cookie"), SessionCookie+"=;") || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("POST /logout: %d %v", w.Code, w.Header())
	}
	if _, _, err := f.st.CheckSession(tok, ""); err == nil {
		t.Fatal("the session lives on after logout")
	}
}

func TestFormPostsFromAnotherOriginAreRefused(t *testing.T) {
	t.Parallel()
	// A device's pages are the same site as the admin host, so SameSite
	// cookies do not stop them posting to it.
	f := newFixture(t)
	tok := f.login("alice", "alice-pass")
	for _, tc := range []struct {
		name, header, value string
		ok                  bool
	}{
		{"device origin", "Origin", "https://pump-1." + adminHost, false},
		{"other site", "Origin", "https://evil.example", false},
		{"opaque origin", "Origin", "null", false},
		{"http origin", "Origin", "http://" + adminHost, false},
		{"other port", "Origin", "https://" + domain + ":9443", false},
		{"same-site fetch", "Sec-Fetch-Site", "same-site", false},
		{"device referer", "Referer", "https://pump-1." + adminHost + "/page", false},
		{"same origin", "Origin", "https://" + adminHost, true},
		{"same-origin fetch", "Sec-Fetch-Site", "same-origin", true},
		{"same referer", "Referer", "https://" + adminHost + "/logout", true},
	} {
		login := request("POST", adminHost, "/login", url.Values{"username": {"alice"}, "password": {"alice-pass"}})
		login.Header.Set(tc.header, tc.value)
		if w := f.serve(login); (w.Code == http.StatusSeeOther) != tc.ok || (!tc.ok && w.Code != http.StatusForbidden) {
			t.Errorf("%s: login answered %d", tc.name, w.Code)
		}
		totpForm := request("POST", adminHost, "/login/totp", url.Values{"pending": {"x"}, "code": {"123456"}})
		totpForm.Header.Set(tc.header, tc.value)
		if w := f.serve(totpForm); (w.Code == http.StatusForbidden) == tc.ok {
			t.Errorf("%s: TOTP form answered %d", tc.name, w.Code)
		}
		if tc.ok {
			continue
		}
		logout := withCookie(request("POST", adminHost, "/logout", nil), SessionCookie, tok)
		logout.Header.Set(tc.header, tc.value)
		if w := f.serve(logout); w.Code != http.StatusForbidden {
			t.Errorf("%s: logout answered %d", tc.name, w.Code)
		}
		if _, _, err := f.st.CheckSession(tok, ""); err != nil {
			t.Fatalf("%s: a refused logout ended the session: %v", tc.name, err)
		}
	}
}

func TestLoginNextIsNeverAnOpenRedirect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct{ next, want string }{
		{"", "/"},
		{"/", "/"},
		{"/auth/handoff?device=pump-1&next=%2F", "/auth/handoff?device=pump-1&next=%2F"},
		{"https://pump-1.devices.example.com:8443/", "https://pump-1.devices.example.com:8443/"},
		{"https://pump-1.devices.example.com:8443", "https://pump-1.devices.example.com:8443"},
		{"https://pump-1.devices.example.com:8443/a?b=c", "https://pump-1.devices.example.com:8443/a?b=c"},
		{"//evil.example/", "/"},
		{"/\\evil.example/", "/"},
		{"/\t/evil.example/", "/"},
		{"/\n/evil.example/", "/"},
		{" //evil.example/", "/"},
		{"https://evil.example/", "/"},
		{"http://pump-1.devices.example.com:8443/", "/"},
		{"https://pump-1.devices.example.com/", "/"},
		{"https://pump-1.devices.example.com:9999/", "/"},
		{"https://devices.example.com:8443/", "/"},
		{"https://a.b.devices.example.com:8443/", "/"},
		{"https://pump-1.devices.example.com.evil.example:8443/", "/"},
		{"https://evil.example#.devices.example.com:8443/", "/"},
		{"https://user@pump-1.devices.example.com:8443/", "/"},
		{"https://pump-1.devices.example.com:8443@evil.example/", "/"},
		{"https://pump-1%2edevices.example.com:8443/", "/"},
		{"https://PUMP-1.devices.example.com:8443/", "/"},
		{"https://pump-1.devices.example.com:8443//evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/" + strings.Repeat("a", 3000), "/"},
	} {
		if got := f.a.loginNext(tc.next); got != tc.want {
			t.Errorf("loginNext(%q) = %q, want %q", tc.next, got, tc.want)
		}
	}
	// Through the form as well.
	w := f.serve(request("POST", adminHost, "/login", url.Values{"username": {"alice"}, "password": {"alice-pass"}, "next": {"//evil.example/"}}))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("login with an open redirect: %d %v", w.Code, w.Header())
	}
}

// FuzzLoginNext checks that whatever next a login accepts, a browser
// resolving it on the login page lands on the admin host or on a device
// subdomain of this reflector.
func FuzzLoginNext(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "https://pump-1.devices.example.com:8443/", "/a?b#c", "https://x@y/"} {
		f.Add(s)
	}
	a := &Admin{cfg: Config{Domain: domain, Port: port}}
	base, _ := url.Parse("https://" + adminHost + "/login")
	f.Fuzz(func(t *testing.T, next string) {
		got := a.loginNext(next)
		u, err := base.Parse(got)
		if err != nil {
			t.Fatalf("loginNext(%q) = %q, which does not parse: %v", next, got, err)
		}
		if u.Scheme != "https" || u.User != nil {
			t.Fatalf("loginNext(%q) = %q: scheme %q", next, got, u.Scheme)
		}
		host := u.Hostname()
		if u.Host != adminHost && !(strings.HasSuffix(host, "."+domain) && u.Port() == port && !strings.Contains(strings.TrimSuffix(host, "."+domain), ".")) {
			t.Fatalf("loginNext(%q) = %q goes to %q", next, got, u.Host)
		}
	})
}
