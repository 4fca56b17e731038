package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// tokenRequest is remote-login's request: a form, no Origin, no cookie.
func tokenRequest(form url.Values) *http.Request {
	return request("POST", adminHost, apiTokenPath, form)
}

// decodeToken reads a successful answer.
func decodeToken(t *testing.T, w *httptest.ResponseRecorder) apiTokenReply {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("token: %d %v\n%s", w.Code, w.Header(), w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	var rep apiTokenReply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	return rep
}

func TestAPITokenIsAnAPITokenOfTheUserFor24Hours(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(tokenRequest(url.Values{"username": {"alice"}, "password": {"alice-pass"}, "application": {"WebTunnelLogin"}}))
	rep := decodeToken(t, w)
	if !store.LooksLikeToken(rep.Token) {
		t.Fatalf("token %q", rep.Token)
	}
	if want := f.now.Add(24 * time.Hour).Unix(); rep.Expires < want-1 || rep.Expires > want {
		t.Fatalf("expires %d, want %d", rep.Expires, want)
	}
	cred, err := f.st.Authenticate(context.Background(), "alice", rep.Token)
	if err != nil || cred.User.Name != "alice" || cred.TokenID == "" {
		t.Fatalf("the token as alice's proxy password: %+v %v", cred, err)
	}
	toks, err := f.st.Tokens("alice")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, tk := range toks {
		if tk.ID == cred.TokenID {
			found = true
			if !strings.HasPrefix(tk.Name, "WebTunnelLogin-") || tk.Expires.Unix() != rep.Expires {
				t.Fatalf("token record %+v", tk)
			}
		}
	}
	if !found {
		t.Fatal("token not listed")
	}
	// A second login makes a second token: names are unique per user.
	rep2 := decodeToken(t, f.serve(tokenRequest(url.Values{"username": {"alice"}, "password": {"alice-pass"}, "application": {"WebTunnelLogin"}})))
	if rep2.Token == rep.Token {
		t.Fatal("the same token twice")
	}
	evs, err := f.st.AuditEvents(store.AuditFilter{Kind: store.AuditTokenCreate})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Actor != "alice" || evs[0].User != "alice" || evs[0].Token != cred.TokenID ||
		evs[0].Reason != "remote-login WebTunnelLogin" || !evs[0].OK {
		t.Fatalf("audit: %+v", evs)
	}
	if strings.Contains(w.Body.String(), "alice-pass") {
		t.Fatal("the answer repeats the password")
	}
}

func TestAPITokenApplicationIsSanitised(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                       "remote-login",
		"WebTunnelLogin":         "WebTunnelLogin",
		"my app/1.0\n\"x\"":      "my-app-1.0--x-",
		"ok._@-":                 "ok._@-",
		"ü":                      "--",
		strings.Repeat("a", 100): strings.Repeat("a", apiTokenAppMax),
		strings.Repeat("é", 100): strings.Repeat("-", apiTokenAppMax),
	} {
		if got := tokenApp(in); got != want {
			t.Errorf("tokenApp(%q) = %q, want %q", in, got, want)
		}
	}
	f := newFixture(t)
	decodeToken(t, f.serve(tokenRequest(url.Values{"username": {"alice"}, "password": {"alice-pass"}, "application": {strings.Repeat("ü", 60)}})))
}

func TestAPITokenWrongPasswordIs401AndLocksOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong-pass"}, {"nobody", "alice-pass"}, {"", ""}, {"alice", f.token},
	} {
		w := f.serve(tokenRequest(url.Values{"username": {tc.user}, "password": {tc.password}, "application": {"x"}}))
		if w.Code != http.StatusUnauthorized || w.Header().Get("X-Authenticate") != "" ||
			!strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%q: %d %v %s", tc.user, w.Code, w.Header(), w.Body)
		}
	}
	for range 5 {
		f.serve(tokenRequest(url.Values{"username": {"alice"}, "password": {"guess"}}))
	}
	w := f.serve(tokenRequest(url.Values{"username": {"alice"}, "password": {"alice-pass"}}))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || strings.Contains(w.Body.String(), "rfl_") {
		t.Fatalf("right password while locked out: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

func TestAPITokenOfATOTPUserAsksForTheCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := url.Values{"username": {"bob"}, "password": {"bob-pass"}, "application": {"WebTunnelLogin"}}
	w := f.serve(tokenRequest(form))
	if w.Code != http.StatusUnauthorized || w.Header().Get("X-Authenticate") != "TOTP" ||
		!strings.Contains(w.Body.String(), `"error"`) || strings.Contains(w.Body.String(), "rfl_") {
		t.Fatalf("TOTP user without a code: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// A wrong password is not told apart by the header.
	w = f.serve(tokenRequest(url.Values{"username": {"bob"}, "password": {"wrong"}, "totp": {f.code(0)}}))
	if w.Code != http.StatusUnauthorized || w.Header().Get("X-Authenticate") != "" {
		t.Fatalf("wrong password with a code: %d %v", w.Code, w.Header())
	}
	form.Set("totp", "000000")
	if w = f.serve(tokenRequest(form)); w.Code != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d %s", w.Code, w.Body)
	}
	form.Set("totp", f.code(0))
	rep := decodeToken(t, f.serve(tokenRequest(form)))
	if cred, err := f.st.AuthenticateToken(rep.Token); err != nil || cred.User.Name != "bob" {
		t.Fatalf("bob's token: %+v %v", cred, err)
	}
	// Codes are single use.
	if w = f.serve(tokenRequest(form)); w.Code != http.StatusUnauthorized {
		t.Fatalf("code used twice: %d %s", w.Code, w.Body)
	}
}

func TestAPITokenWrongCodesLockOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	form := url.Values{"username": {"bob"}, "password": {"bob-pass"}}
	for i := range 5 {
		form.Set("totp", "00000"+string(rune('0'+i)))
		f.serve(tokenRequest(form))
	}
	form.Set("totp", f.code(0))
	w := f.serve(tokenRequest(form))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("right code while locked out: %d %v", w.Code, w.Header())
	}
}

func TestAPITokenOnlyPOST(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, m := range []string{"GET", "PUT", "DELETE", "HEAD"} {
		w := f.serve(request(m, adminHost, apiTokenPath+"?username=alice&password=alice-pass", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Errorf("%s: %d %v", m, w.Code, w.Header())
		}
	}
	// The credentials in the query are not read.
	w := f.serve(request("POST", adminHost, apiTokenPath+"?username=alice&password=alice-pass", url.Values{}))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("credentials in the URL: %d", w.Code)
	}
}

func TestAPITokenIsNotSubjectToTheFormOriginCheck(t *testing.T) {
	t.Parallel()
	// A program names no origin; the answer sets no cookie, so a page that
	// posts here cross-origin can neither read the token nor log anybody in.
	f := newFixture(t)
	r := tokenRequest(url.Values{"username": {"alice"}, "password": {"alice-pass"}})
	r.Header.Set("Origin", "https://pump-1."+adminHost)
	w := f.serve(r)
	decodeToken(t, w)
	if w.Header().Get("Set-Cookie") != "" || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("headers %v", w.Header())
	}
}
