package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// noVNC's app on a device host: the device session first (a browser without
// one goes through the hand-off and comes back to the same URL, query
// included), then the embedded files with their types, and vnc.html under a
// policy that allows its one inline script by hash and nothing else inline.
func TestNoVNCAppOnADeviceHost(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		f.a.ServeNoVNC(w, r, "pump-1")
		return w
	}
	const page = "/.reflector/novnc/vnc.html?path=my-devices/websockify%3Fport%3D5900&autoconnect=true"

	r := request("GET", pump1, page, nil)
	r.Header.Set("Accept", "text/html")
	w := serve(r)
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || loc == nil || loc.Path != "/auth/handoff" || loc.Query().Get("next") != page {
		t.Fatalf("without a session: %d, Location %q; want the hand-off, back to %s", w.Code, w.Header().Get("Location"), page)
	}

	tok := f.deviceSession("pump-1")
	w = serve(withCookie(request("GET", pump1, page, nil), DeviceCookie, tok))
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("vnc.html: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	csp := w.Header().Get("Content-Security-Policy")
	scripts := novncInline.FindAllStringSubmatch(w.Body.String(), -1)
	if len(scripts) != 1 {
		t.Fatalf("vnc.html has %d inline scripts, want 1", len(scripts))
	}
	sum := sha256.Sum256([]byte(scripts[0][1]))
	if hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, "script-src 'self' "+hash+";") {
		t.Errorf("policy %q does not allow the inline script %s", csp, hash)
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("policy %q contains %s", csp, bad)
		}
	}
	if w.Header().Get("X-Frame-Options") != "DENY" {
		t.Error("vnc.html may be framed")
	}

	for path, ctype := range map[string]string{
		"/.reflector/novnc/app/ui.js":                       "text/javascript; charset=utf-8",
		"/.reflector/novnc/core/rfb.js":                     "text/javascript; charset=utf-8",
		"/.reflector/novnc/vendor/pako/lib/zlib/inflate.js": "text/javascript; charset=utf-8",
		"/.reflector/novnc/app/styles/base.css":             "text/css; charset=utf-8",
		"/.reflector/novnc/app/images/connect.svg":          "image/svg+xml",
		"/.reflector/novnc/defaults.json":                   "application/json",
	} {
		w := serve(withCookie(request("GET", pump1, path, nil), DeviceCookie, tok))
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != ctype || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, path := range []string{"/.reflector/novnc/nope.js", "/.reflector/novnc/app/", "/.reflector/novnc/pako/lib/zlib/inflate.js", "/.reflector/novnc/VERSION"} {
		if w := serve(withCookie(request("GET", pump1, path, nil), DeviceCookie, tok)); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, w.Code)
		}
	}
	w = serve(withCookie(request("GET", pump1, "/.reflector/novnc/?autoconnect=true", nil), DeviceCookie, tok))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/.reflector/novnc/vnc.html?autoconnect=true" {
		t.Errorf("the bare prefix: %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := serve(withCookie(request("POST", pump1, "/.reflector/novnc/vnc.html", nil), DeviceCookie, tok)); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}
