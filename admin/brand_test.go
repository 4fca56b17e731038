package admin

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/admin/brand"
	"github.com/reflector-dev/reflector/internal/auth"
)

// The sign-in pages wear the brand: its product name and texts, and links
// to its stylesheet, logo and favicon on the admin host, which the policy
// allows.
func TestPagesWearTheBrand(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"texts.json":  `{"productName": "Acme Remote", "signIn.title": "Welcome to Acme", "signIn.user": "Acme id"}`,
		"style.css":   "body{background:#123456}",
		"logo.svg":    `<svg xmlns="http://www.w3.org/2000/svg"/>`,
		"favicon.ico": "icon",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := brand.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Domain: domain, Port: port, Store: f.st, Guard: auth.NewGuard(f.st, auth.NewLimiter(auth.LimiterConfig{}), nil),
		Brand: b, Web: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, request(http.MethodGet, adminHost, "/login", nil))
	body := w.Body.String()
	origin := "https://" + adminHost
	for _, want := range []string{
		"<title>Welcome to Acme · Acme Remote</title>", `<span class="product">Acme Remote</span>`, ">Acme id</label>",
		`<link rel="stylesheet" href="` + origin + `/brand/style.css">`, `<img src="` + origin + `/brand/logo"`,
		`<link rel="icon" href="` + origin + `/brand/favicon">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %s:\n%s", want, body)
		}
	}
	checkPageHeaders(t, w)
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src 'self' "+origin+" 'sha256-") || !strings.Contains(csp, "img-src 'self' data: "+origin) {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	// Without a brand, the pages link no brand files.
	w = httptest.NewRecorder()
	f.a.ServeHTTP(w, request(http.MethodGet, adminHost, "/login", nil))
	if body := w.Body.String(); strings.Contains(body, "/brand/") || !strings.Contains(body, "<title>Sign in · Reflector</title>") {
		t.Errorf("default sign-in page:\n%s", body)
	}
}
