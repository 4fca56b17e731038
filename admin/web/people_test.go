package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// peopleRig is the web UI over a real store, with the visitor chosen per
// request by the X-Test-User header (a stand-in for the session cookie).
type peopleRig struct {
	t   *testing.T
	st  *store.Store
	web *Web
}

const testCSRF = "csrf-token"

func newPeopleRig(t *testing.T) *peopleRig {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := ops.New(ops.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddGroup(store.Group{Name: "plant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser("root", "root-password", store.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser("ann", "ann-password", store.RoleUser, []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{
		Ops: svc,
		Session: func(r *http.Request) (store.Credential, string, bool, error) {
			u, err := st.User(r.Header.Get("X-Test-User"))
			if err != nil {
				return store.Credential{}, "", false, nil
			}
			return store.Credential{User: u}, testCSRF, true, nil
		},
		SameOrigin: func(*http.Request) bool { return true },
		DeviceURL:  func(d string) string { return "https://" + d + ".example.net:8443/" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &peopleRig{t: t, st: st, web: w}
}

func (g *peopleRig) do(user, method, path string, form url.Values) (int, string) {
	g.t.Helper()
	var body io.Reader
	if form != nil {
		form.Set("csrf", testCSRF)
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://admin.example.net:8443"+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r.Header.Set("X-Test-User", user)
	rec := httptest.NewRecorder()
	g.web.ServeHTTP(rec, r)
	return rec.Code, rec.Body.String() + rec.Header().Get("Location")
}

func TestPeoplePagesAreAdminsOnly(t *testing.T) {
	g := newPeopleRig(t)
	for _, p := range []string{"/people", "/people/users/ann", "/people/users/root", "/people/groups/plant-a", "/people/users/ann/remove"} {
		if code, _ := g.do("ann", "GET", p, nil); code != http.StatusForbidden {
			t.Errorf("ann GET %s: %d, want 403", p, code)
		}
		if code, body := g.do("root", "GET", p, nil); code != http.StatusOK {
			t.Errorf("root GET %s: %d\n%s", p, code, body)
		}
	}
	if code, _ := g.do("ann", "POST", "/people/users", url.Values{"name": {"eve"}, "role": {"admin"}, "generate": {"1"}}); code != http.StatusForbidden {
		t.Errorf("ann adds a user: %d, want 403", code)
	}
	if _, err := g.st.User("eve"); err == nil {
		t.Error("ann added a user")
	}
}

func TestPeopleAddUserShowsTheGeneratedPasswordOnce(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("root", "POST", "/people/users", url.Values{"name": {"bea"}, "role": {"user"}, "groups": {"plant-a"}, "generate": {"1"}})
	if code != http.StatusOK {
		t.Fatalf("add: %d\n%s", code, body)
	}
	i := strings.Index(body, `<code id="secret">`)
	if i < 0 {
		t.Fatalf("no password shown:\n%s", body)
	}
	pw := body[i+len(`<code id="secret">`):]
	pw = pw[:strings.Index(pw, "<")]
	if u, err := g.st.CheckPassword(t.Context(), "bea", pw); err != nil || len(u.Groups) != 1 {
		t.Fatalf("the shown password %q: %v %+v", pw, err, u)
	}
	// No password and nothing ticked: the form again, with the values.
	code, body = g.do("root", "POST", "/people/users", url.Values{"name": {"cy"}, "role": {"admin"}})
	if code != http.StatusOK || !strings.Contains(body, `value="cy"`) || !strings.Contains(body, "field-error") {
		t.Fatalf("no password: %d\n%s", code, body)
	}
	// A name taken: the error at the name.
	code, body = g.do("root", "POST", "/people/users", url.Values{"name": {"ann"}, "role": {"user"}, "password": {"x-password-1"}})
	if code != http.StatusOK || !strings.Contains(body, "already exists") {
		t.Fatalf("taken name: %d\n%s", code, body)
	}
}

func TestPeopleGroupInUseIsAConflictOnItsPage(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("root", "POST", "/people/groups/plant-a/remove", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, "in use") || !strings.Contains(body, "ann") {
		t.Fatalf("remove a group in use: %d\n%s", code, body)
	}
	if code, body := g.do("root", "POST", "/people/groups", url.Values{"name": {"spare"}, "maxDevices": {"-1"}}); code != http.StatusOK {
		t.Fatalf("negative quota: %d\n%s", code, body)
	}
	if code, loc := g.do("root", "POST", "/people/groups", url.Values{"name": {"spare"}, "maxDevices": {"3"}}); code != http.StatusSeeOther || !strings.HasSuffix(loc, "/people/groups/spare?done=groupAdded") {
		t.Fatalf("add group: %d %s", code, loc)
	}
	if code, _ := g.do("root", "POST", "/people/groups/spare/remove", url.Values{}); code != http.StatusSeeOther {
		t.Fatalf("remove an empty group: %d", code)
	}
}

func TestMeTokenShowsTheCurlLine(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("ann", "POST", "/me/tokens", url.Values{"name": {"laptop"}, "expires": {"7"}, "devices": {"pump-1"}})
	if code != http.StatusOK {
		t.Fatalf("create: %d\n%s", code, body)
	}
	want := "curl -x https://admin.example.net:8443 --proxy-user ann:"
	if !strings.Contains(body, want) || !strings.Contains(body, " http://pump-1.example.net/") {
		t.Fatalf("no curl line %q:\n%s", want, body)
	}
	toks, _ := g.st.Tokens("ann")
	if len(toks) != 1 || toks[0].Expires.IsZero() || toks[0].Devices != "pump-1" {
		t.Fatalf("tokens %+v", toks)
	}
	// Nobody else revokes it.
	if code, _ := g.do("root", "GET", "/me", nil); code != http.StatusOK {
		t.Fatalf("root's /me: %d", code)
	}
	if code, _ := g.do("ann", "POST", "/me/tokens/"+toks[0].ID+"/revoke", url.Values{}); code != http.StatusSeeOther {
		t.Fatalf("revoke: %d", code)
	}
	if toks, _ := g.st.Tokens("ann"); len(toks) != 0 {
		t.Fatalf("after revoke: %+v", toks)
	}
}

func TestMePasswordErrorsStayOnTheForm(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("ann", "POST", "/me/password", url.Values{"currentPassword": {"nope"}, "password": {"new-password-1"}, "password2": {"new-password-1"}})
	if code != http.StatusOK || !strings.Contains(body, "not your current password") {
		t.Fatalf("wrong current: %d\n%s", code, body)
	}
	code, body = g.do("ann", "POST", "/me/password", url.Values{"currentPassword": {"ann-password"}, "password": {"new-password-1"}, "password2": {"new-password-2"}})
	if code != http.StatusOK || !strings.Contains(body, "differ") {
		t.Fatalf("mismatch: %d\n%s", code, body)
	}
	if code, _ := g.do("ann", "POST", "/me/password", url.Values{"currentPassword": {"ann-password"}, "password": {"new-password-1"}, "password2": {"new-password-1"}}); code != http.StatusSeeOther {
		t.Fatalf("change: %d", code)
	}
	if _, err := g.st.CheckPassword(t.Context(), "ann", "new-password-1"); err != nil {
		t.Fatal(err)
	}
}

func TestMeTOTPEnrolmentShowsTheQRCode(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("ann", "POST", "/me/totp/begin", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, `src="data:image/png;base64,`) || !strings.Contains(body, `id="totp-key"`) {
		t.Fatalf("begin: %d\n%s", code, body)
	}
	code, body = g.do("ann", "POST", "/me/totp/confirm", url.Values{"code": {"12"}, "url": {"otpauth://totp/x?secret=ABC"}})
	if code != http.StatusOK || !strings.Contains(body, "6 digits") {
		t.Fatalf("malformed code: %d\n%s", code, body)
	}
}

func TestMeTOTPDisableWantsACurrentCode(t *testing.T) {
	g := newPeopleRig(t)
	otpURL, err := g.st.BeginTOTP("ann", "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(otpURL)
	secret := u.Query().Get("secret")
	code := func(at time.Time) string {
		c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	if err := g.st.ConfirmTOTP("ann", code(now)); err != nil {
		t.Fatal(err)
	}
	wrong := "000000"
	if code(now.Add(30*time.Second)) == wrong {
		wrong = "111111"
	}
	status, body := g.do("ann", "POST", "/me/totp/disable", url.Values{"code": {wrong}})
	if status != http.StatusOK || !strings.Contains(body, "Wrong code") {
		t.Fatalf("wrong code: %d\n%s", status, body)
	}
	if status, loc := g.do("ann", "POST", "/me/totp/disable", url.Values{"code": {code(now.Add(30 * time.Second))}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "/me?done=totpOff") {
		t.Fatalf("current code: %d %s", status, loc)
	}
	if usr, _ := g.st.User("ann"); usr.TOTP {
		t.Fatal("TOTP still on")
	}
	// An admin turns it off without a code, for a user who lost theirs.
	if err := g.st.AddUser("cy", "cy-password", store.RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	otpURL, err = g.st.BeginTOTP("cy", "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ = url.Parse(otpURL)
	secret = u.Query().Get("secret")
	if err := g.st.ConfirmTOTP("cy", code(time.Now())); err != nil {
		t.Fatal(err)
	}
	if status, _ := g.do("root", "POST", "/people/users/cy/totp/disable", url.Values{}); status != http.StatusSeeOther {
		t.Fatalf("forced: %d", status)
	}
	if usr, _ := g.st.User("cy"); usr.TOTP {
		t.Fatal("TOTP still on after the admin's force")
	}
}

func TestPeopleRemoveUserAfterTheConfirmationPage(t *testing.T) {
	g := newPeopleRig(t)
	code, body := g.do("root", "GET", "/people/users/ann/remove", nil)
	if code != http.StatusOK || !strings.Contains(body, `action="/people/users/ann/remove" data-confirm=`) {
		t.Fatalf("confirmation page: %d\n%s", code, body)
	}
	if code, loc := g.do("root", "POST", "/people/users/ann/remove", url.Values{}); code != http.StatusSeeOther || !strings.HasSuffix(loc, "/people?done=userRemoved") {
		t.Fatalf("remove: %d %s", code, loc)
	}
	if _, err := g.st.User("ann"); err == nil {
		t.Fatal("ann is still there")
	}
	// Not yourself: said on the page, and nothing removed.
	code, body = g.do("root", "POST", "/people/users/root/remove", url.Values{})
	if code != http.StatusOK || !strings.Contains(body, "cannot remove yourself") {
		t.Fatalf("remove yourself: %d\n%s", code, body)
	}
	if _, err := g.st.User("root"); err != nil {
		t.Fatal(err)
	}
}
