package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// auditRows are the kinds and texts of the audit table's rows, top to
// bottom.
type auditRow struct {
	Seq  int    `json:"seq"`
	Kind string `json:"kind"`
	Text string `json:"text"`
}

func (u *webUI) auditRows() []auditRow {
	u.t.Helper()
	return run(u.b, "read the audit rows", chromedp.Evaluate[[]auditRow](
		`[...document.querySelectorAll('table.audit tbody tr')].map(r => ({seq: +r.dataset.seq, kind: r.dataset.kind, text: r.innerText}))`))
}

// signInAndWait is signIn, then waits until the browser has left the
// sign-in page: signIn's wait for a heading is met by the sign-in page
// itself, and a navigation right after it could cancel the form's post.
func (u *webUI) signInAndWait(user, password string) {
	u.t.Helper()
	u.signIn(user, password)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(u.b.location(), "/login") {
		if time.Now().After(deadline) {
			u.b.fatalf("still on the sign-in page")
		}
		time.Sleep(50 * time.Millisecond)
	}
	u.b.step(10*time.Second, "the heading", chromedp.WaitVisible(chromedp.CSS(`main h1`)))
}

// waitLocation waits until the page's URL holds each of parts (a link or
// form took the browser there), then for the page's heading.
func (u *webUI) waitLocation(parts ...string) {
	u.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc, ok := u.b.location(), true
		for _, p := range parts {
			ok = ok && strings.Contains(loc, p)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			u.b.fatalf("the browser is at %s, not at a URL with %q", loc, parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	u.b.step(10*time.Second, "the heading", chromedp.WaitVisible(chromedp.CSS(`main h1`)))
}

// A stream through the reflector shows on /audit with its bytes and
// duration; the form filters by device and kind, and keeps its filters
// while paging through more events than a page holds.
func TestWebUIAuditShowsStreamsFiltersAndPages(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("root", "root-pass", true)
	u.addUser("alice", "alice-pass", false, "plant-a")
	secret := u.addDevice(store.Device{ID: "pump-a", Name: "Pump A", Groups: []string{"plant-a"}})
	u.addDevice(store.Device{ID: "pump-b", Groups: []string{"plant-a"}})
	echo := echoServer(t)
	u.runAgent("pump-a", secret, echo)
	waitFor(t, func() bool { _, ok := u.srv.Hub().Status("pump-a"); return ok })

	// alice opens a stream, sends 1000 bytes, reads them back, and closes.
	conn := u.proxyConn()
	resp, br := u.connect(conn, basic("alice", "alice-pass"), fmt.Sprintf("pump-a.localhost:%d", echo))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: status %d", resp.StatusCode)
	}
	payload := strings.Repeat("x", 1000)
	io.WriteString(conn, payload)
	if _, err := io.ReadFull(br, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a duration to show
	conn.Close()
	waitFor(t, func() bool { return len(u.auditEvents(store.AuditStream)) == 1 })

	// 60 logins of carol: more than a page.
	for i := range 60 {
		u.srv.Store().Audit(store.AuditEvent{Kind: store.AuditLogin, OK: i%7 != 0, User: "carol", Client: "192.0.2.7",
			Reason: fmt.Sprintf("login %d", i)})
	}

	u.signInAndWait("root", "root-pass")
	u.b.step(10*time.Second, "desktop size", chromedp.EmulateViewport(1280, 900))
	u.open("/audit")
	u.b.step(20*time.Second, "filter by pump-a and stream",
		chromedp.SendKeys(chromedp.CSS(`#device`), "pump-a"),
		chromedp.SetValue(chromedp.CSS(`#kind`), "stream"),
		chromedp.Click(chromedp.CSS(`.audit-filters button[type=submit]`)),
	)
	u.waitLocation("device=pump-a", "kind=stream")
	rows := u.auditRows()
	if len(rows) != 1 || rows[0].Kind != "stream" {
		t.Fatalf("pump-a's streams: %+v", rows)
	}
	row := rows[0].Text
	for _, want := range []string{"alice", "pump-a", fmt.Sprint(echo), "↑ 1000 B", "↓ 1000 B", "ok"} {
		if !strings.Contains(row, want) {
			t.Errorf("the stream's row lacks %q: %q", want, row)
		}
	}
	ms := run(u.b, "read the duration", chromedp.Evaluate[string](`document.querySelector('table.audit [data-field=duration]').innerText`))
	if !strings.HasSuffix(ms, " ms") && !strings.HasSuffix(ms, " s") {
		t.Errorf("the stream's duration reads %q", ms)
	}

	// Everything of pump-a: its agent's logins and the stream.
	u.open("/audit?device=pump-a")
	kinds := map[string]bool{}
	for _, r := range u.auditRows() {
		kinds[r.Kind] = true
		if !strings.Contains(r.Text, "pump-a") {
			t.Errorf("a row of another device: %q", r.Text)
		}
	}
	if !kinds["stream"] || !kinds["agent.login"] {
		t.Errorf("pump-a's events are of kinds %v", kinds)
	}
	u.shot("audit")
	// On a phone each event is a card of labelled lines.
	u.b.step(10*time.Second, "phone size", chromedp.EmulateViewport(390, 844))
	u.open("/audit?device=pump-a")
	if wide := run(u.b, "page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); wide > 390 {
		t.Errorf("the audit page is %d px wide on a 390-px phone", wide)
	}
	u.shot("audit-phone")
	u.b.step(10*time.Second, "desktop size", chromedp.EmulateViewport(1280, 900))

	// No stream of pump-b.
	u.open("/audit?device=pump-b&kind=stream")
	if rows := u.auditRows(); len(rows) != 0 || !strings.Contains(u.text(), "No events match.") {
		t.Errorf("pump-b's streams: %+v", rows)
	}

	// A family: agent.* is the kinds agent.something.
	u.open("/audit?kind=agent.")
	for _, r := range u.auditRows() {
		if !strings.HasPrefix(r.Kind, "agent.") {
			t.Errorf("kind agent.* shows a %s", r.Kind)
		}
	}

	// Pages: carol's 60 logins are 50 and 10, newest first.
	u.open("/audit?user=carol&kind=login")
	first := u.auditRows()
	if len(first) != 50 || first[0].Seq <= first[49].Seq || !strings.Contains(first[0].Text, "login 59") {
		t.Fatalf("the first page: %d rows, from %+v", len(first), first[0])
	}
	u.b.step(20*time.Second, "older", chromedp.Click(chromedp.CSS(`a[rel=next]`)))
	u.waitLocation("user=carol", "kind=login", "before=")
	second := u.auditRows()
	if len(second) != 10 || second[0].Seq >= first[49].Seq || !strings.Contains(second[9].Text, "login 0") {
		t.Fatalf("the second page: %+v", second)
	}
	if run(u.b, "an Older link", chromedp.Evaluate[bool](`!!document.querySelector('a[rel=next]')`)) {
		t.Error("the last page links to an older one")
	}
	u.b.step(20*time.Second, "newest", chromedp.Click(chromedp.CSS(`p.pages a`)))
	u.waitLocation("user=carol", "kind=login")
	waitFor(t, func() bool { return !strings.Contains(u.b.location(), "before=") })
	u.b.step(10*time.Second, "the table", chromedp.WaitVisible(chromedp.CSS(`table.audit`)))
	if again := u.auditRows(); len(again) != 50 || again[0].Seq != first[0].Seq {
		t.Errorf("the Newest link shows %d rows from %d", len(again), again[0].Seq)
	}
}

// A branded instance shows its product name, texts, logo and stylesheet on
// the sign-in page and the dashboard, under the pages' strict policy.
func TestWebUIAuditBrandedInstance(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"texts.json": `{"productName": "Acme Remote", "signIn.title": "Welcome to Acme"}`,
		"style.css":  ":root{--accent:#c2410c}\nbody{background-color:#fdf2e9}\n",
		"logo.svg": `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="32" viewBox="0 0 96 32">` +
			`<rect width="32" height="32" rx="6" fill="#c2410c"/><text x="40" y="23" font-family="sans-serif" font-size="18" fill="#7c2d12">ACME</text></svg>`,
		"favicon.svg": `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="#c2410c"/></svg>`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u := newWebUI(t, server.Config{BrandDir: dir})
	u.addUser("alice", "alice-pass", false, "plant-a")
	u.addDevice(store.Device{ID: "pump-a", Name: "Pump A", Groups: []string{"plant-a"}})

	type looks struct {
		Title, Product, Background string
		LogoWidth                  int
	}
	look := func() looks {
		return run(u.b, "read the looks", chromedp.Evaluate[looks](`({
			Title: document.title,
			Product: document.querySelector('.product').innerText,
			Background: getComputedStyle(document.body).backgroundColor,
			LogoWidth: (document.querySelector('img.logo') || {}).naturalWidth || 0})`))
	}
	const brandBackground = "rgb(253, 242, 233)"

	u.b.step(20*time.Second, "open the sign-in page", chromedp.Navigate(u.base+"/"), chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
	// Images load after the DOM; wait for the logo.
	waitFor(t, func() bool { return look().LogoWidth > 0 })
	got := look()
	if got.Title != "Welcome to Acme · Acme Remote" || got.Product != "Acme Remote" || got.Background != brandBackground {
		t.Errorf("sign-in page: %+v", got)
	}
	if h1 := run(u.b, "heading", chromedp.Evaluate[string](`document.querySelector('main h1').innerText`)); h1 != "Welcome to Acme" {
		t.Errorf("sign-in heading %q", h1)
	}
	u.shot("signin-branded")

	u.signInAndWait("alice", "alice-pass")
	waitFor(t, func() bool { return look().LogoWidth > 0 })
	got = look()
	if got.Title != "Devices · Acme Remote" || got.Product != "Acme Remote" || got.Background != brandBackground {
		t.Errorf("dashboard: %+v", got)
	}
	if !strings.Contains(u.text(), "Pump A") {
		t.Errorf("dashboard:\n%s", u.text())
	}
	u.shot("dashboard-branded")

	// The sign-out page wears it too.
	u.open("/logout")
	if got = look(); got.Title != "Sign out · Acme Remote" || got.Background != brandBackground {
		t.Errorf("sign-out page: %+v", got)
	}
}
