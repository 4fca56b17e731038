package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

// vncCall is one call of Config.VNC.
type vncCall struct {
	user, device string
	port         uint16
}

// vncRig is the web UI over a real store whose VNC hook records its calls
// and answers 101 (the proxy's part is tested in package proxy and the
// integration tests).
type vncRig struct {
	*peopleRig
	mu    sync.Mutex
	calls []vncCall
}

func newVNCRig(t *testing.T) *vncRig {
	t.Helper()
	g := &vncRig{peopleRig: newPeopleRig(t)}
	g.web.cfg.VNC = func(w http.ResponseWriter, r *http.Request, cred store.Credential, device string, port uint16) {
		g.mu.Lock()
		g.calls = append(g.calls, vncCall{cred.User.Name, device, port})
		g.mu.Unlock()
		w.WriteHeader(http.StatusSwitchingProtocols)
	}
	g.web.mux = g.web.routes()
	if _, err := g.st.AddDevice(store.Device{ID: "pump-17", Groups: []string{"plant-a"}, Ports: []uint16{22, 5900, 5901}}); err != nil {
		t.Fatal(err)
	}
	return g
}

// socket opens the viewer's WebSocket path as user, from a page of origin
// ("" for none).
func (g *vncRig) socket(user, target string, origins ...string) int {
	g.t.Helper()
	r := httptest.NewRequest("GET", "https://admin.example.net:8443"+target, nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	for _, o := range origins {
		r.Header.Add("Origin", o)
	}
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	rec := httptest.NewRecorder()
	g.web.ServeHTTP(rec, r)
	return rec.Code
}

// TestVNCSocketRefusesAPageOfADeviceHost (attack): every device host is the
// same site as the admin host, so a device's page (or any site's) that
// opens the viewer's WebSocket would carry the user's admin session along;
// a WebSocket is not bound by the same-origin policy. The socket answers
// 403 unless the page is of the admin host exactly, before the session is
// used or a stream opened.
func TestVNCSocketRefusesAPageOfADeviceHost(t *testing.T) {
	g := newVNCRig(t)
	const path = "/devices/pump-17/vnc/websocket?port=5900"
	for _, origins := range [][]string{
		{"https://pump-17.example.net:8443"}, // the device's own page
		{"https://pump-18.example.net:8443"}, // another device's page
		{"http://admin.example.net:8443"},    // another scheme
		{"https://admin.example.net:8444"},   // another port
		{"https://admin.example.net.evil.example:8443"},
		{"https://user@admin.example.net:8443"},
		{"https://admin.example.net:8443/page"},
		{"null"},
		{},
		{"https://admin.example.net:8443", "https://pump-17.example.net:8443"},
	} {
		if code := g.socket("ann", path, origins...); code != http.StatusForbidden {
			t.Errorf("Origin %q: %d, want 403", origins, code)
		}
	}
	if len(g.calls) != 0 {
		t.Fatalf("refused origins reached the proxy: %+v", g.calls)
	}

	const admin = "https://admin.example.net:8443"
	if code := g.socket("", path, admin); code != http.StatusUnauthorized {
		t.Errorf("no session: %d, want 401", code)
	}
	if code := g.socket("ann", "/devices/pump-17/vnc/websocket?port=99999", admin); code != http.StatusBadRequest {
		t.Errorf("bad port: %d, want 400", code)
	}
	if len(g.calls) != 0 {
		t.Fatalf("refused requests reached the proxy: %+v", g.calls)
	}
	if code := g.socket("ann", path, "HTTPS://Admin.Example.NET:8443"); code != http.StatusSwitchingProtocols {
		t.Errorf("the admin host's page: %d", code)
	}
	if code := g.socket("ann", "/devices/pump-17/vnc/websocket", admin); code != http.StatusSwitchingProtocols {
		t.Errorf("no port: %d", code)
	}
	want := []vncCall{{"ann", "pump-17", 5900}, {"ann", "pump-17", 0}}
	if len(g.calls) != 2 || g.calls[0] != want[0] || g.calls[1] != want[1] {
		t.Errorf("calls %+v, want %+v", g.calls, want)
	}
}

func TestVNCPage(t *testing.T) {
	g := newVNCRig(t)
	// The device page's button: the record allows 5900.
	if code, body := g.do("ann", "GET", "/devices/pump-17", nil); code != http.StatusOK || !strings.Contains(body, `<a class="button" href="/devices/pump-17/vnc">`) {
		t.Errorf("device page: %d, no button to the viewer", code)
	}
	code, body := g.do("ann", "GET", "/devices/pump-17/vnc", nil)
	if code != http.StatusOK {
		t.Fatalf("viewer: %d\n%s", code, body)
	}
	for _, want := range []string{
		`data-socket="/devices/pump-17/vnc/websocket?port=5900"`, // the record's 5900
		`<option value="5900" selected>5900</option>`,
		`<option value="5901">5901</option>`,
		`<script type="module" src="/assets/vnc.js"></script>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("viewer lacks %s", want)
		}
	}
	if strings.Contains(body, `name="password"`) || strings.Contains(body, `name="username"`) {
		t.Error("the credentials form has named fields, which a form sent without the script would put in the URL")
	}
	code, body = g.do("ann", "GET", "/devices/pump-17/vnc?port=5901", nil)
	if code != http.StatusOK || !strings.Contains(body, `data-socket="/devices/pump-17/vnc/websocket?port=5901"`) {
		t.Errorf("?port=5901: %d", code)
	}
	if code, _ := g.do("ann", "GET", "/devices/pump-17/vnc?port=x", nil); code != http.StatusBadRequest {
		t.Errorf("?port=x: %d", code)
	}
	if _, err := g.st.AddDevice(store.Device{ID: "pump-18"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := g.do("ann", "GET", "/devices/pump-18/vnc", nil); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Errorf("a device of another group: %d", code)
	}

	// noVNC's modules for the viewer: core and pako, nothing else.
	for path, want := range map[string]int{
		"/assets/novnc/core/rfb.js":                     http.StatusOK,
		"/assets/novnc/vendor/pako/lib/zlib/inflate.js": http.StatusOK,
		"/assets/novnc/app/ui.js":                       http.StatusNotFound,
		"/assets/novnc/vnc.html":                        http.StatusNotFound,
		"/assets/novnc/LICENSE.txt":                     http.StatusNotFound,
	} {
		if code, _ := g.do("", "GET", path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// Without a VNC hook there is no viewer.
func TestVNCViewerNeedsItsHook(t *testing.T) {
	g := newPeopleRig(t)
	if _, err := g.st.AddDevice(store.Device{ID: "pump-17", Groups: []string{"plant-a"}, Ports: []uint16{5900}}); err != nil {
		t.Fatal(err)
	}
	if _, body := g.do("ann", "GET", "/devices/pump-17", nil); strings.Contains(body, "/devices/pump-17/vnc") {
		t.Error("the device page links a viewer that is not there")
	}
	for _, path := range []string{"/devices/pump-17/vnc", "/devices/pump-17/vnc/websocket", "/assets/novnc/core/rfb.js"} {
		if code, _ := g.do("ann", "GET", path, nil); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
}
