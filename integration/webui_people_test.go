package integration

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// The people pages (users and groups, for admins) and my account (tokens,
// TOTP, password, sessions, for everyone), driven in Chromium.

// totpCode is the code an authenticator app shows for secret at t.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// submit fills the inputs of form (CSS selector) by name, ticks the
// checkboxes matching ticks (attribute selectors), sends it as the submit
// button would, and waits for the next page.
func (u *webUI) submit(form string, values map[string]string, ticks ...string) {
	u.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{
		// A form in a closed <details> is opened, as a user would.
		chromedp.Evaluate[chromedp.Void](`(() => { const d = document.querySelector('` + form + `').closest('details'); if (d) d.open = true; })()`),
	}
	for name, val := range values {
		acts = append(acts, chromedp.SetValue(chromedp.CSS(form+` [name="`+name+`"]`), val))
	}
	for _, sel := range ticks {
		acts = append(acts, chromedp.Click(chromedp.CSS(form+` input[type=checkbox][`+sel+`]`)))
	}
	// The page's script asks before some forms are sent: say yes.
	acts = append(acts, chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; window.oldPage = true`),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('`+form+`').requestSubmit()`))
	u.b.step(20*time.Second, "submit "+form, acts...)
	u.waitNewPage()
}

// waitNewPage waits until the page marked oldPage is replaced and loaded.
func (u *webUI) waitNewPage() {
	u.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(u.b.tab, 2*time.Second)
		fresh, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!window.oldPage && document.readyState === "complete" && !!document.querySelector("main h1")`))
		cancel()
		if err == nil && fresh {
			return
		}
		if time.Now().After(deadline) {
			u.b.fatalf("no new page after a form was sent")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signInTOTP signs in with a password and then a code.
func (u *webUI) signInTOTP(user, password, code string) {
	u.t.Helper()
	u.b.step(20*time.Second, "open the sign-in page", chromedp.Navigate(u.base+"/"))
	u.signInHere(user, password, code)
}

// signInHere signs in with the login form the browser shows, and a code
// when code is not "", and waits for the signed-in page.
func (u *webUI) signInHere(user, password, code string) {
	u.t.Helper()
	acts := []chromedp.Action[chromedp.Void]{
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`form [type=submit]`)),
	}
	if code != "" {
		acts = append(acts, chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=code]`), code),
			chromedp.Click(chromedp.CSS(`form [type=submit]`)))
	}
	acts = append(acts, chromedp.WaitVisible(chromedp.CSS(`nav a[href="/me"]`)))
	u.b.step(20*time.Second, "sign in as "+user, acts...)
}

// signedIn signs in with the login form and waits for the signed-in page
// (signIn's heading may still be the login page's).
func (u *webUI) signedIn(user, password string) {
	u.t.Helper()
	u.signIn(user, password)
	u.b.step(20*time.Second, "wait for the signed-in page", chromedp.WaitVisible(chromedp.CSS(`nav a[href="/me"]`)))
}

// signOut signs out with the header's button.
func (u *webUI) signOut() {
	u.t.Helper()
	u.b.step(20*time.Second, "sign out",
		chromedp.Click(chromedp.CSS(`form.signout button`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
}

// mustSee fails unless the page shows every one of want.
func (u *webUI) mustSee(want ...string) {
	u.t.Helper()
	page := u.text()
	for _, w := range want {
		if !strings.Contains(page, w) {
			u.b.fatalf("the page does not show %q", w)
		}
	}
}

// A user with TOTP signs in with the password and then a code; the wrong
// code is refused.
func TestWebUIPeopleSignInWithTOTP(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	st := u.srv.Store()
	otpURL, err := st.BeginTOTP("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _ := url.Parse(otpURL)
	secret := parsed.Query().Get("secret")
	now := time.Now()
	if err := st.ConfirmTOTP("alice", totpCode(t, secret, now)); err != nil {
		t.Fatal(err)
	}
	// A code of a later step: the confirming one is spent.
	u.signInTOTP("alice", "alice-pass", totpCode(t, secret, now.Add(30*time.Second)))
	u.open("/me")
	u.mustSee("Two-factor sign-in is on")
}

// TOTP enrolment on /me: the QR code and the key, a code from the key
// confirms (after a wrong one is refused on the page), and signing in
// again asks for a code.
func TestWebUIPeopleTOTPEnrolment(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.signedIn("alice", "alice-pass")
	u.open("/me")
	u.shot("me")
	u.phoneShot("me-phone")
	u.submit("#totp-begin", nil)
	u.mustSee("Scan this code")
	qr := run(u.b, "read the QR code", chromedp.Evaluate[string](`(() => { const i = document.querySelector('img.qr'); return i.complete && i.naturalWidth > 0 ? i.src : ""; })()`))
	if !strings.HasPrefix(qr, "data:image/png;base64,") {
		t.Fatalf("QR image not shown: %.60q", qr)
	}
	u.shot("me-totp")
	key := u.textOf("#totp-key")
	// A wrong code first: the page again, with the error at the field.
	u.submit("#totp-confirm", map[string]string{"code": "000000"})
	u.mustSee("Wrong code", "Scan this code")
	now := time.Now()
	if totpCode(t, key, now) == "000000" {
		now = now.Add(-30 * time.Second)
	}
	u.submit("#totp-confirm", map[string]string{"code": totpCode(t, key, now)})
	if usr, _ := u.srv.Store().User("alice"); !usr.TOTP {
		t.Fatal("the store has TOTP off")
	}
	// Confirming ended every session of alice's: signing in again asks for
	// a code after the password (one of a later step: the confirming one
	// is spent).
	u.signInHere("alice", "alice-pass", totpCode(t, key, now.Add(30*time.Second)))
	u.mustSee("Two-factor sign-in is on")
	if loc := u.b.location(); loc != u.base+"/me?done=totpOn" {
		t.Fatalf("after sign-in at %s", loc)
	}
}

// A user makes a token on /me, runs the curl line the page shows (with the
// reflector's CA) through the proxy to a device, and revokes it: curl then
// gets 407.
func TestWebUIPeopleTokenWorksWithCurlUntilRevoked(t *testing.T) {
	requireCommand(t, "curl", "curl")
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	port := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from web-1")
	}))
	secret := u.addDevice(store.Device{ID: "web-1", Groups: []string{"plant-a"}, HTTPPort: port})
	u.runAgent("web-1", secret, port)
	waitFor(t, func() bool { _, ok := u.srv.Hub().Status("web-1"); return ok })

	ca := filepath.Join(t.TempDir(), "reflector.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.srv.Certificate().Leaf.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	u.signedIn("alice", "alice-pass")
	u.open("/me")
	u.submit("#create-token", map[string]string{"name": "laptop", "expires": "7", "devices": "web-1"})
	line := u.textOf("#token-curl")
	tok := u.textOf("#token-secret")
	if want := "curl -x " + u.base + " --proxy-user alice:" + tok + " http://web-1.localhost/"; line != want {
		t.Fatalf("curl line %q, want %q", line, want)
	}
	u.shot("me-token")
	u.phoneShot("me-token-phone")
	curl := func() (int, string) {
		args := append(strings.Fields(line)[1:], "--proxy-cacert", ca, "--silent", "--show-error", "--max-time", "20",
			"--write-out", "\n%{http_code}")
		out, err := exec.Command("curl", args...).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("curl: %v", err)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndex(s, "\n")
		var code int
		fmt.Sscan(s[i+1:], &code)
		return code, s
	}
	if code, out := curl(); code != 200 || !strings.Contains(out, "hello from web-1") {
		t.Fatalf("curl with the token: %d\n%s", code, out)
	}
	u.open("/me")
	u.mustSee("laptop")
	u.submit(`tr[data-token="laptop"] form`, nil)
	u.mustSee("Token revoked")
	if code, out := curl(); code != http.StatusProxyAuthRequired {
		t.Fatalf("curl with the revoked token: %d, want 407\n%s", code, out)
	}
}

// An admin adds a user with a generated password, shown once, with which
// the user signs in; changes their groups; sees groups with their counts;
// and a group in use cannot be removed.
func TestWebUIPeopleAdminAddsAUser(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("root", "root-pass", true)
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.addGroups("plant-b")
	u.addDevice(store.Device{ID: "pump-1", Groups: []string{"plant-a"}})
	u.addDevice(store.Device{ID: "pump-2", Groups: []string{"plant-a"}})
	u.signedIn("root", "root-pass")
	u.open("/people")
	u.mustSee("alice", "plant-a", "plant-b")
	u.b.step(5*time.Second, "open the add-user form", chromedp.Click(chromedp.CSS(`details:has(#add-user) > summary`)))
	u.shot("people")
	u.phoneShot("people-phone")
	u.submit("#add-user", map[string]string{"name": "bea", "role": "user"}, `name="generate"`, `value="plant-b"`)
	u.mustSee("The generated password", "shown only once")
	password := u.textOf("#secret")
	if len(password) < 16 {
		t.Fatalf("generated password %q", password)
	}
	u.open("/people/users/bea")
	u.mustSee("plant-b")
	u.submit("#user-update", nil, `value="plant-a"`)
	u.mustSee("Role and groups saved", "plant-a, plant-b")
	u.shot("user")
	u.open("/people/groups/plant-a")
	u.mustSee("alice", "bea", "pump-1", "pump-2")
	u.shot("group")
	u.submit(`form[action="/people/groups/plant-a/remove"]`, nil)
	u.mustSee("in use")

	// The new user signs in with the password the page showed.
	u.signOut()
	u.signedIn("bea", password)
	u.mustSee("pump-1")
}

// A user gets 403 on the people pages, and on their forms even with the
// session's cookie, CSRF token and the admin host's origin.
func TestWebUIPeopleAreForbiddenToUsers(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.signedIn("alice", "alice-pass")
	if run(u.b, "find the People link", chromedp.Evaluate[bool](`!!document.querySelector('nav a[href="/people"]')`)) {
		t.Error("a user sees the People link")
	}
	u.open("/me")
	csrf := run(u.b, "read the CSRF token", chromedp.Evaluate[string](`document.querySelector('input[name=csrf]').value`))
	var cookie string
	for _, c := range u.b.cookies(u.base + "/") {
		cookie += c.Name + "=" + c.Value + "; "
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: u.pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	status := func(method, path string, form url.Values) int {
		var body io.Reader
		if form != nil {
			form.Set("csrf", csrf)
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, u.base+path, body)
		req.Header.Set("Cookie", cookie)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", u.base)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := status("GET", "/me", nil); code != http.StatusOK {
		t.Fatalf("GET /me with the browser's cookie: %d", code)
	}
	for _, p := range []string{"/people", "/people/users/alice", "/people/groups/plant-a", "/people/users/alice/remove"} {
		if code := status("GET", p, nil); code != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403", p, code)
		}
	}
	for path, form := range map[string]url.Values{
		"/people/users":                    {"name": {"eve"}, "role": {"admin"}, "generate": {"1"}},
		"/people/users/alice":              {"role": {"admin"}, "groups": {"plant-a"}},
		"/people/users/alice/password":     {"generate": {"1"}},
		"/people/users/alice/totp/disable": {},
		"/people/users/alice/remove":       {},
		"/people/groups":                   {"name": {"mine"}},
		"/people/groups/plant-a":           {"maxDevices": {"1"}},
		"/people/groups/plant-a/remove":    {},
	} {
		if code := status("POST", path, form); code != http.StatusForbidden {
			t.Errorf("POST %s: %d, want 403", path, code)
		}
	}
	if usr, _ := u.srv.Store().User("alice"); usr.Role != store.RoleUser {
		t.Fatalf("alice's role %q", usr.Role)
	}
	if _, err := u.srv.Store().User("eve"); err == nil {
		t.Fatal("a user added a user")
	}
}

// Changing my password: the old one stops working, the new one works.
func TestWebUIPeopleChangeMyPassword(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.signedIn("alice", "alice-pass")
	u.open("/me")
	u.submit("#change-password", map[string]string{"currentPassword": "wrong", "password": "new-pass-1", "password2": "new-pass-1"})
	u.mustSee("not your current password")
	u.submit("#change-password", map[string]string{"currentPassword": "alice-pass", "password": "new-pass-1", "password2": "new-pass-1"})
	// Changing it ended every session of alice's: she signs in again, with
	// the new one; the old one no longer works.
	if loc := u.b.location(); !strings.HasPrefix(loc, u.base+"/login") {
		t.Fatalf("after the change at %s", loc)
	}
	ctx := t.Context()
	if _, err := u.srv.Store().CheckPassword(ctx, "alice", "alice-pass"); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("the old password: %v", err)
	}
	u.signInHere("alice", "new-pass-1", "")
	u.mustSee("Your password is changed")
}

// Sign out everywhere ends the user's other sessions and this one.
func TestWebUIPeopleSignOutEverywhere(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.addUser("bob", "bob-pass", false, "plant-a")
	other, _, err := u.srv.Store().CreateSession("alice", "") // another browser's
	if err != nil {
		t.Fatal(err)
	}
	bobs, _, err := u.srv.Store().CreateSession("bob", "")
	if err != nil {
		t.Fatal(err)
	}
	u.signedIn("alice", "alice-pass")
	u.open("/me")
	u.submit("#signout-everywhere", nil)
	if loc := u.b.location(); !strings.HasPrefix(loc, u.base+"/login") {
		t.Fatalf("after sign out everywhere at %s", loc)
	}
	if _, _, err := u.srv.Store().CheckSession(other, ""); err == nil {
		t.Fatal("the other browser's session still works")
	}
	if _, _, err := u.srv.Store().CheckSession(bobs, ""); err != nil {
		t.Fatalf("bob's session ended too: %v", err)
	}
	u.open("/me")
	if loc := u.b.location(); !strings.HasPrefix(loc, u.base+"/login") {
		t.Fatalf("/me after sign out everywhere at %s", loc)
	}
}
