package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

// concrete fills a route's path parameters with names that exist nowhere.
func concrete(path string) string {
	return strings.NewReplacer("{id}", "nosuch", "{name}", "nosuch", "{streamId}", "0000000000000000").Replace(path)
}

func TestEveryRouteRefusesTheUnauthenticated(t *testing.T) {
	r := newRig(t)
	for _, rt := range api.ServedRoutes() {
		if rt[1] == api.Prefix+"/openapi.json" {
			continue
		}
		status, body, hdr := r.call(rt[0], concrete(rt[1]), "", nil)
		var e apiError
		json.Unmarshal(body, &e)
		if status != http.StatusUnauthorized || e.Error.Code != "unauthorized" || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s without credentials: %d %s (WWW-Authenticate %q)", rt[0], rt[1], status, body, hdr.Get("WWW-Authenticate"))
		}
	}
}

func TestBadTokensAre401(t *testing.T) {
	r := newRig(t)
	for _, auth := range []string{"Bearer rfl_0000000000000000_nottherealsecretatall", "Basic cm9vdDpwdw==", "Bearer", "rfl_x"} {
		status, body, _ := r.call(http.MethodGet, api.Prefix+"/me", "", nil, "Authorization", auth)
		if status != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d %s", auth, status, body)
		}
	}
}

func TestRevokedTokenIs401(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	tok := r.token("alice")
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/me", tok, nil, nil)
	toks, _ := r.srv.Store().Tokens("alice")
	if _, err := r.srv.Store().RevokeToken(toks[0].ID); err != nil {
		t.Fatal(err)
	}
	r.mustFail(http.StatusUnauthorized, "unauthorized", "", http.MethodGet, api.Prefix+"/me", tok, nil)
}

func TestMeTellsWhoAndHow(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	var me struct {
		User struct {
			Name, Role string
			Groups     []string
		}
		Auth, TokenID, CSRFToken string
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/me", r.token("alice"), nil, &me)
	if me.User.Name != "alice" || me.User.Role != "user" || me.Auth != "token" || me.TokenID == "" || me.CSRFToken != "" {
		t.Errorf("GET /me: %+v", me)
	}
}

// session signs user in on the web (a session record and its cookie).
func (r *rig) session(user string) string {
	r.t.Helper()
	tok, _, err := r.srv.Store().CreateSession(user, "")
	if err != nil {
		r.t.Fatal(err)
	}
	return admin.SessionCookie + "=" + tok
}

// The session cookie is sent by the browser whatever page asks: a request
// that changes something must also carry the session's CSRF token and an
// Origin of the admin host.
func TestSessionCookieNeedsCSRFTokenAndOriginToChangeThings(t *testing.T) {
	r := newRig(t)
	cookie := r.session("root")
	var me struct {
		Auth      string `json:"auth"`
		CSRFToken string `json:"csrfToken"`
	}
	status, body, _ := r.call(http.MethodGet, api.Prefix+"/me", "", nil, "Cookie", cookie)
	if status != http.StatusOK {
		t.Fatalf("GET /me with the cookie: %d %s", status, body)
	}
	json.Unmarshal(body, &me)
	if me.Auth != "session" || me.CSRFToken == "" {
		t.Fatalf("GET /me with the cookie: %s", body)
	}
	origin := "https://localhost:" + r.port()
	add := func(id string, headers ...string) (int, string) {
		status, body, _ := r.call(http.MethodPost, api.Prefix+"/devices", "", map[string]any{"id": id},
			append([]string{"Cookie", cookie}, headers...)...)
		return status, string(body)
	}
	// The attacks: a page elsewhere (or a device's page, same site) posts
	// with the user's cookie.
	for _, attack := range [][]string{
		{},                             // no token, no Origin
		{"Origin", origin},             // no token
		{"X-CSRF-Token", me.CSRFToken}, // no Origin
		{"Origin", "https://pump-17.localhost:" + r.port(), "X-CSRF-Token", me.CSRFToken}, // a device's page
		{"Origin", "https://evil.example", "X-CSRF-Token", me.CSRFToken},
		{"Origin", origin, "X-CSRF-Token", me.CSRFToken + "x"},
		{"Origin", origin, "X-CSRF-Token", strings.ToUpper(me.CSRFToken)},
	} {
		if status, body := add("pump-17", attack...); status != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("POST /devices with the cookie and %q: %d %s", attack, status, body)
		}
	}
	if _, err := r.srv.Store().Device("pump-17"); err == nil {
		t.Fatal("a refused request added the device")
	}
	if status, body := add("pump-17", "Origin", origin, "X-CSRF-Token", me.CSRFToken); status != http.StatusCreated {
		t.Fatalf("POST /devices with the cookie, token and Origin: %d %s", status, body)
	}
	// Another session's token is not this one's.
	other := r.session("root")
	status, body, _ = r.call(http.MethodPost, api.Prefix+"/devices", "", map[string]any{"id": "pump-18"},
		"Cookie", other, "Origin", origin, "X-CSRF-Token", me.CSRFToken)
	if status != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d %s", status, body)
	}
}

func (r *rig) port() string {
	_, port, _ := strings.Cut(r.srv.Addr().String(), "127.0.0.1:")
	return port
}

func TestUnknownPathsAndMethodsAnswerJSON(t *testing.T) {
	r := newRig(t)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/nosuch", r.adminToken, nil)
	status, _, hdr := r.call(http.MethodPut, api.Prefix+"/devices", r.adminToken, nil)
	if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT /devices: %d Allow %q", status, hdr.Get("Allow"))
	}
}

// HEAD is GET without the body (RFC 9110 §9.3.2), on every GET route:
// monitors and curl -I use it.
func TestHeadAnswersAsGet(t *testing.T) {
	r := newRig(t)
	plain := &http.Client{Transport: r.client.Transport.(validatingTransport).next, Timeout: 30 * time.Second}
	for _, path := range []string{api.Prefix + "/me", api.Prefix + "/devices", api.Prefix + "/openapi.json"} {
		req, _ := http.NewRequest(http.MethodHead, "https://localhost:"+r.port()+path, nil)
		req.Header.Set("Authorization", "Bearer "+r.adminToken)
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) != 0 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("HEAD %s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	req, _ := http.NewRequest(http.MethodHead, "https://localhost:"+r.port()+api.Prefix+"/me", nil)
	resp, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HEAD /me without a token: %d", resp.StatusCode)
	}
}

func TestLockedOutAddressGets429WithRetryAfter(t *testing.T) {
	r := newRig(t, func(c *serverConfig) { c.Throttle.Failures = 3 })
	bad := "rfl_0000000000000000_nottherealsecretatall"
	var last int
	var hdr http.Header
	for range 6 {
		last, _, hdr = r.call(http.MethodGet, api.Prefix+"/me", bad, nil)
	}
	if last != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("after 6 bad tokens: %d, Retry-After %q", last, hdr.Get("Retry-After"))
	}
}
