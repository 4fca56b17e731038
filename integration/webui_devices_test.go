package integration

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// The device pages in a browser: adding a device and starting a real agent
// with the secret the page shows, rotating it, a stream shown and cut, the
// pages a user may not use, and an enrolment key that enrols a real agent.

// click clicks sel, which sends a form, and waits for the next page to show
// want (a CSS selector). With confirm set the page's confirmation dialogs
// are answered yes, as a user would.
func (u *webUI) click(sel, want string, confirm bool) {
	u.t.Helper()
	script := `window.__before = true;`
	if confirm {
		script += ` window.confirm = () => true;`
	}
	run(u.b, "mark the page", chromedp.Evaluate[bool](script+` true`))
	u.b.click(20*time.Second, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := run(u.b, "wait for "+want, chromedp.Evaluate[bool](
			`!window.__before && !!document.querySelector(`+jsString(want)+`)`))
		if ok {
			return
		}
		if time.Now().After(deadline) {
			u.b.fatalf("after clicking %s, no page with %s", sel, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// fill sets the value of the input sel.
func (u *webUI) fill(sel, value string) {
	u.t.Helper()
	// By script, not by DevTools' node ids, which a document update just
	// after a navigation invalidates.
	ok := run(u.b, "fill "+sel, chromedp.Evaluate[bool](`(e => { if (!e) return false; e.value = `+jsString(value)+
		`; e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true })(document.querySelector(`+jsString(sel)+`))`))
	if !ok {
		u.b.fatalf("fill %s: no such element", sel)
	}
}

// textOf is the text of the element sel.
func (u *webUI) textOf(sel string) string {
	u.t.Helper()
	// By script, as fill.
	text := run(u.b, "read "+sel, chromedp.Evaluate[*string](`(e => e ? e.innerText : null)(document.querySelector(`+jsString(sel)+`))`))
	if text == nil {
		u.b.fatalf("read %s: no such element", sel)
	}
	return strings.TrimSpace(*text)
}

// has reports whether the page has an element sel.
func (u *webUI) has(sel string) bool {
	u.t.Helper()
	return run(u.b, "look for "+sel, chromedp.Evaluate[bool](`!!document.querySelector(`+jsString(sel)+`)`))
}

// phoneShot saves a screenshot 390 px wide, as a phone shows the page.
func (u *webUI) phoneShot(name string) {
	u.t.Helper()
	u.b.step(10*time.Second, "phone viewport", chromedp.EmulateViewport(390, 844))
	u.shot(name)
	u.b.step(10*time.Second, "desktop viewport", chromedp.EmulateViewport(1280, 900))
}

// post sends a form to path of the admin host as the browser's session
// would, with its CSRF token and origin: what a user can do without the
// page's buttons.
func (u *webUI) post(path string, form url.Values) *http.Response {
	u.t.Helper()
	return u.request(http.MethodPost, path, form)
}

// get fetches path of the admin host with the browser's session, outside
// the browser (which reports a 403 or 404 page as a console error).
func (u *webUI) get(path string) *http.Response {
	u.t.Helper()
	return u.request(http.MethodGet, path, nil)
}

func (u *webUI) request(method, path string, form url.Values) *http.Response {
	u.t.Helper()
	var session string
	for _, c := range u.b.cookies(u.base + "/") {
		if c.Name == admin.SessionCookie {
			session = c.Value
		}
	}
	if session == "" {
		u.t.Fatal("no session cookie")
	}
	var body io.Reader
	if form != nil {
		sum := sha256.Sum256([]byte("reflector csrf v1\x00" + session))
		form.Set("csrf", base64.RawURLEncoding.EncodeToString(sum[:24]))
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.base+path, body)
	if err != nil {
		u.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", u.base)
	}
	req.AddCookie(&http.Cookie{Name: admin.SessionCookie, Value: session})
	addr := u.srv.Addr().String()
	c := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: u.pool, ServerName: "localhost"},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	resp, err := c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	u.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (u *webUI) online(id string) bool {
	_, ok := u.srv.Hub().Status(id)
	return ok
}

// An admin adds a device on the page, and a real agent started with the
// secret the page shows comes online; rotating the secret on the device
// page drops that agent for good, and the new secret brings it back.
func TestWebUIDevicesAddRotate(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("root", "root-pass", true)
	u.addGroups("plant-a", "plant-b")
	u.signIn("root", "root-pass")
	// The dashboard links the form; the test follows the link by its URL
	// (a click right after the sign-in's redirect could hit the node of
	// the page before it: "Could not find node with given id" in CI).
	u.b.step(20*time.Second, "see the add-device link", chromedp.WaitVisible(chromedp.CSS(`a[href="/devices/new"]`)))
	u.b.step(20*time.Second, "add a device", chromedp.Navigate(u.base+"/devices/new"), chromedp.WaitVisible(chromedp.CSS(`input#id`)))

	// A bad port: the error is next to the field and the input is kept.
	u.fill(`#id`, "pump-17")
	u.fill(`#name`, "Pump 17")
	u.b.step(10*time.Second, "tick plant-a", chromedp.Click(chromedp.CSS(`input[name=groups][value=plant-a]`)))
	u.fill(`#ports`, "80, 99999")
	u.shot("device-new")
	u.click(`form.device-form button[type=submit]`, `#ports-error`, false)
	if got := u.textOf(`#ports-error`); !strings.Contains(got, "99999") {
		t.Errorf("ports error %q", got)
	}
	if v := run(u.b, "read id", chromedp.Value(chromedp.CSS(`#id`))); v != "pump-17" {
		t.Errorf("the id was not kept: %q", v)
	}
	if !u.has(`input[name=groups][value=plant-a]:checked`) {
		t.Error("the group was not kept")
	}
	u.fill(`#ports`, "80")
	u.phoneShot("device-new-phone")
	u.click(`form.device-form button[type=submit]`, `#secret`, false)
	secret := u.textOf(`#secret`)
	if !regexp.MustCompile(`^\S{20,}$`).MatchString(secret) {
		t.Fatalf("secret %q", secret)
	}
	if line := u.textOf(`#agent-line`); !strings.Contains(line, secret) || !strings.Contains(line, "--device pump-17") {
		t.Errorf("agent line %q", line)
	}
	if props := u.textOf(`#properties`); !strings.Contains(props, "webtunnel.password = "+secret) {
		t.Errorf("properties:\n%s", props)
	}
	u.shot("device-secret")
	d, err := u.srv.Store().Device("pump-17")
	if err != nil || d.Name != "Pump 17" || len(d.Groups) != 1 || d.Groups[0] != "plant-a" {
		t.Fatalf("stored device %+v, %v", d, err)
	}

	// The download carries the secret in a POST, never a URL.
	resp := u.post("/devices/pump-17/webtunnel-agent", url.Values{"secret": {secret}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "WebTunnelAgent.properties") ||
		!strings.Contains(string(body), "webtunnel.password = "+secret) {
		t.Errorf("download: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}

	// A real agent with the page's secret comes online on the dashboard.
	u.runAgent("pump-17", secret, 80)
	u.open("/")
	waitFor(t, func() bool { return u.dotOn("pump-17") })

	// Rotate on the device page: the agent is dropped and its secret
	// refused.
	u.open("/devices/pump-17")
	if !u.has(`tr[data-device="pump-17"] .dot.on`) {
		t.Error("the device page does not show the device online")
	}
	u.click(`form[action="/devices/pump-17/rotate"] button`, `#secret`, true)
	fresh := u.textOf(`#secret`)
	if fresh == secret || fresh == "" {
		t.Fatalf("rotated secret %q", fresh)
	}
	if !strings.Contains(u.text(), "dropped") {
		t.Errorf("the page does not say the agent was dropped:\n%s", u.text())
	}
	waitFor(t, func() bool { return !u.online("pump-17") })
	time.Sleep(500 * time.Millisecond) // the agent retries every 100 ms
	if u.online("pump-17") {
		t.Fatal("the agent with the old secret is back")
	}
	// The agent's retries with the old secret may have the address
	// throttled by now: 429 is as much a refusal as 401.
	if code := u.agentUpgradeStatus("pump-17", secret); code != http.StatusUnauthorized && code != http.StatusTooManyRequests {
		t.Errorf("old secret: %d, want 401", code)
	}

	// The device page's dot turns on live when an agent with the new
	// secret connects.
	u.open("/devices/pump-17")
	if u.has(`tr[data-device="pump-17"] .dot.on`) {
		t.Fatal("offline device shown online")
	}
	u.runAgent("pump-17", fresh, 80)
	waitFor(t, func() bool { return u.has(`tr[data-device="pump-17"] .dot.on`) })

	// Disable and enable; then remove, with the confirmation page.
	u.click(`form[action="/devices/pump-17/disable"] button`, `form[action="/devices/pump-17/enable"]`, true)
	waitFor(t, func() bool { return !u.online("pump-17") })
	u.click(`form[action="/devices/pump-17/enable"] button`, `form[action="/devices/pump-17/disable"]`, false)
	u.b.step(20*time.Second, "remove", chromedp.Click(chromedp.CSS(`a[href="/devices/pump-17/remove"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/devices/pump-17/remove"]`)))
	if h := u.textOf(`main h1`); h != "Remove Pump 17 (pump-17)?" {
		t.Errorf("confirmation heading %q", h)
	}
	u.click(`form[action="/devices/pump-17/remove"] button`, `table.devices, main p`, false)
	if _, err := u.srv.Store().Device("pump-17"); err == nil {
		t.Fatal("pump-17 was not removed")
	}
}

// The device page shows an open stream with its user and port, and the
// record, agent and properties; a user sees their own stream but no admin
// form, and a form posted directly is refused; an admin cuts the stream and
// the user's connection ends.
func TestWebUIDevicesStreamCutAndRights(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("root", "root-pass", true)
	u.addUser("alice", "alice-pass", false, "plant-a")
	secret := u.addDevice(store.Device{ID: "pump-17", Name: "Pump 17", Groups: []string{"plant-a"}})
	u.addDevice(store.Device{ID: "pump-b", Groups: []string{"plant-b"}})
	echo := echoServer(t)
	u.runAgentConfig(agent.Config{DeviceID: "pump-17", Secret: secret, DeviceName: "Pump 17", DeviceVersion: "2.4.1",
		Ports: []uint16{22, 80, 5900, echo}, HTTPPort: 80, SSHPort: 22, VNCPort: 5900})
	waitFor(t, func() bool { return u.online("pump-17") })

	conn := u.proxyConn()
	defer conn.Close()
	resp, br := u.connect(conn, basic("alice", "alice-pass"), fmt.Sprintf("pump-17.localhost:%d", echo))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	io.WriteString(conn, "hello, pump")
	buf := make([]byte, 11)
	if _, err := io.ReadFull(br, buf); err != nil {
		t.Fatal(err)
	}

	// alice: her stream, no forms, and 403 for a form posted anyway.
	u.signIn("alice", "alice-pass")
	u.open("/devices/pump-17")
	page := u.text()
	for _, want := range []string{"alice", fmt.Sprint(echo), "Open web UI", "remote-connect -t TOKEN", "--proxy-user alice:TOKEN", "sshPort"} {
		if !strings.Contains(page, want) {
			t.Errorf("alice's device page lacks %q:\n%s", want, page)
		}
	}
	if u.has(`main form`) || strings.Contains(page, "Rotate") || strings.Contains(page, "Cut") {
		t.Errorf("alice sees admin forms:\n%s", page)
	}
	for _, path := range []string{"/devices/pump-17/rotate", "/devices/pump-17/disable", "/devices/pump-17/remove", "/devices/pump-17",
		"/devices/new", "/enrollment-keys"} {
		if resp := u.post(path, url.Values{"id": {"x"}, "group": {"plant-a"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("alice POST %s: %d, want 403", path, resp.StatusCode)
		}
	}
	if d, _ := u.srv.Store().Device("pump-17"); d.Disabled {
		t.Fatal("alice disabled the device")
	}
	for path, want := range map[string]int{"/devices/new": 403, "/enrollment-keys": 403, "/devices/pump-b": 404, "/devices/pump-b/remove": 404, "/devices/pump-17/remove": 403} {
		if resp := u.get(path); resp.StatusCode != want {
			t.Errorf("alice GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// root: the stream, the services, and the cut.
	u.b.step(20*time.Second, "sign out", chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
	u.signIn("root", "root-pass")
	// signIn's heading may be the sign-in page's own: wait for the
	// dashboard before leaving it.
	u.b.step(20*time.Second, "signed in", chromedp.WaitVisible(chromedp.CSS(`form.signout`)))
	u.open("/devices/pump-17")
	row := u.textOf(`tr[data-stream]`)
	if !strings.Contains(row, "alice") || !strings.Contains(row, fmt.Sprint(echo)) || !strings.Contains(row, "11 B") {
		t.Errorf("stream row %q", row)
	}
	page = u.text()
	for _, want := range []string{"2.4.1", "Pump 17", "reflector.v1", "vncPort", "ProxyCommand", "remote-ssh -t TOKEN -l USER https://pump-17.localhost:" + u.port} {
		if !strings.Contains(page, want) {
			t.Errorf("root's device page lacks %q", want)
		}
	}
	u.shot("device")
	u.phoneShot("device-phone")
	u.click(`tr[data-stream] form button`, `p.notice`, true)
	if got := u.textOf(`p.notice`); got != "The stream was cut." {
		t.Errorf("notice %q", got)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(buf); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("alice's connection lives on: %d %v", n, err)
	}
	waitFor(t, func() bool { return !strings.Contains(u.reload(), "alice") || !u.has(`tr[data-stream]`) })
}

// reload loads the page again and returns its text.
func (u *webUI) reload() string {
	u.t.Helper()
	u.b.step(20*time.Second, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
	return u.text()
}

// An enrolment key made on the page enrols a real agent, which then shows
// online; the key is listed with its use, and removed.
func TestWebUIDevicesEnrollmentKey(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("root", "root-pass", true)
	u.addGroups("field")
	u.signIn("root", "root-pass")
	u.click(`nav a[href="/enrollment-keys"]`, `select#group`, false)
	u.b.step(10*time.Second, "choose the group", chromedp.SetValue(chromedp.CSS(`select#group`), "field"))
	u.fill(`#max`, "1")
	u.click(`form.key-form button[type=submit]`, `#enroll-key`, false)
	key := u.textOf(`#enroll-key`)
	if !strings.HasPrefix(key, "rfe_") {
		t.Fatalf("key %q", key)
	}
	if line := u.textOf(`#enroll-line`); !strings.Contains(line, key) || !strings.Contains(line, "DEVICE-ID") {
		t.Errorf("enrol line %q", line)
	}
	if row := u.textOf(`tr[data-key]`); !strings.Contains(row, "field") || !strings.Contains(row, "0 / 1") {
		t.Errorf("key row %q", row)
	}
	u.shot("enrollment-keys")
	u.phoneShot("enrollment-keys-phone")

	u.runAgentConfig(agent.Config{DeviceID: "pump-9", EnrollKey: key, StateFile: filepath.Join(t.TempDir(), "pump-9.state"), Ports: []uint16{80}})
	waitFor(t, func() bool { return u.online("pump-9") }) // the dashboard lists devices that exist when it loads
	u.open("/")
	waitFor(t, func() bool { return u.dotOn("pump-9") })
	u.open("/enrollment-keys")
	if row := u.textOf(`tr[data-key]`); !strings.Contains(row, "1 / 1") {
		t.Errorf("key row after enrolment %q", row)
	}
	u.click(`tr[data-key] form button`, `p.notice`, true)
	if u.has(`tr[data-key]`) {
		t.Error("the key is still listed")
	}
}
