package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// The web UI's browser tests run a whole reflector (newStack) and headless
// Chromium (newBrowser), sign in through the login form, and drive the
// pages as a user would. Every test fails on a console error or a
// Content-Security-Policy violation on any page it saw (webUI's cleanup),
// and saves a screenshot of each page it names to its temporary directory
// (and as webui-<name>.png to $REFLECTOR_SCREENSHOTS when set: how
// docs/webui-*.png are made).

// webUI is a reflector and a browser on its admin host.
type webUI struct {
	*stack
	b    *browser
	base string // https://localhost:<port>, the admin host
	port string

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations
	expected []string // problems a test causes on purpose, by a part of their text
	shots    string   // where screenshots go
}

// newWebUI starts a reflector with cfg's chosen settings and a browser
// that watches its console.
func newWebUI(t *testing.T, cfg server.Config) *webUI {
	t.Helper()
	requireChromium(t)
	s := newStackConfig(t, cfg)
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	u := &webUI{stack: s, b: newBrowser(t), base: "https://localhost:" + port, port: port, shots: t.TempDir()}
	u.watchConsole()
	t.Cleanup(func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, p := range u.problems {
			if !slices.ContainsFunc(u.expected, func(e string) bool { return strings.Contains(p, e) }) {
				t.Errorf("browser console: %s", p)
			}
		}
	})
	return u
}

// watchConsole records console errors, uncaught exceptions and log entries
// of level error (CSP violations among them).
func (u *webUI) watchConsole() {
	entries := chromedp.Events(u.b.tab, cdplog.EntryAdded)
	exceptions := chromedp.Events(u.b.tab, runtime.ExceptionThrown)
	consoles := chromedp.Events(u.b.tab, runtime.ConsoleAPICalled)
	add := func(s string) {
		u.mu.Lock()
		u.problems = append(u.problems, s)
		u.mu.Unlock()
	}
	u.b.listeners.Add(3)
	go func() {
		defer u.b.listeners.Done()
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e != nil && (e.Level == cdplog.EntryLevelError || strings.Contains(e.Text, "Content Security Policy")) {
				if strings.Contains(e.URL, "favicon.ico") {
					continue // the browser asks for one whatever the page says
				}
				add(fmt.Sprintf("%s: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	}()
	go func() {
		defer u.b.listeners.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			if d := ev.ExceptionDetails; d != nil {
				add("exception: " + d.Text + " " + fmt.Sprint(d.Exception))
			}
		}
	}()
	go func() {
		defer u.b.listeners.Done()
		for ev, err := range consoles {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				add(fmt.Sprintf("console.%s %v", ev.Type, ev.Args))
			}
		}
	}()
	if _, err := chromedp.Call(u.b.tab, cdplog.Enable, cdp.Empty{}); err != nil {
		u.t.Fatalf("Log.enable: %v", err)
	}
	if _, err := chromedp.Call(u.b.tab, runtime.Enable, cdp.Empty{}); err != nil {
		u.t.Fatalf("Runtime.enable: %v", err)
	}
}

// expectConsole lets console problems containing text pass: a test that
// causes them on purpose (a refused WebSocket) says so.
func (u *webUI) expectConsole(text string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expected = append(u.expected, text)
}

// signIn opens the admin host and signs in with the login form.
func (u *webUI) signIn(user, password string) {
	u.t.Helper()
	u.b.step(20*time.Second, "sign in as "+user,
		chromedp.Navigate(u.base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`form [type=submit]`)),
		// The sign-out button is on every page of a signed-in user, and on
		// none of the sign-in pages (whose heading main h1 would match).
		chromedp.WaitVisible(chromedp.CSS(`form.signout`)),
	)
	u.b.settle(10 * time.Second)
}

// open navigates to path of the admin host and waits for its heading.
func (u *webUI) open(path string) {
	u.t.Helper()
	u.b.step(20*time.Second, "open "+path, chromedp.Navigate(u.base+path), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
}

// text is the visible text of the page.
func (u *webUI) text() string {
	u.t.Helper()
	return run(u.b, "read the page", chromedp.Evaluate[string](`document.body.innerText`))
}

// shot saves a screenshot of the whole page as name.png.
func (u *webUI) shot(name string) {
	u.t.Helper()
	png := run(u.b, "screenshot "+name, chromedp.FullScreenshot(100)) // 100: PNG
	paths := []string{filepath.Join(u.shots, name+".png")}
	if d := os.Getenv("REFLECTOR_SCREENSHOTS"); d != "" {
		paths = append(paths, filepath.Join(d, "webui-"+name+".png"))
	}
	for _, p := range paths {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			u.t.Errorf("save screenshot: %v", err)
		}
	}
}

// waitText waits until the page's text contains want (the page's own
// script updates it; no reload).
func (u *webUI) waitText(want string, limit time.Duration) {
	u.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if strings.Contains(u.text(), want) {
			return
		}
		if time.Now().After(deadline) {
			u.b.fatalf("the page did not show %q within %s", want, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runAgent starts our agent for a device until stop is called or the test
// ends.
func (u *webUI) runAgent(id, secret string, ports ...uint16) (stop func()) {
	u.t.Helper()
	return u.runAgentConfig(agent.Config{DeviceID: id, Secret: secret, Ports: ports})
}

// runAgentConfig starts our agent with cfg, pointed at this reflector,
// until stop is called or the test ends.
func (u *webUI) runAgentConfig(cfg agent.Config) (stop func()) {
	u.t.Helper()
	cfg.ReflectorURL, cfg.Fingerprint = "https://"+u.srv.Addr().String(), u.srv.Fingerprint()
	a, err := agent.NewWithOptions(cfg, testLogger(u.t), agent.Options{BaseDelay: 50 * time.Millisecond, MaxDelay: 200 * time.Millisecond, UnauthorizedDelay: 100 * time.Millisecond})
	if err != nil {
		u.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	u.t.Cleanup(stop)
	return stop
}

// dotOn reports whether the dashboard row of device shows it online.
func (u *webUI) dotOn(device string) bool {
	u.t.Helper()
	return run(u.b, "read "+device+"'s dot", chromedp.Evaluate[bool](
		`!!document.querySelector('tr[data-device="`+device+`"] .dot.on')`))
}

// The dashboard lists only the devices of the user's groups, and a device's
// dot turns green when its agent connects and grey when it goes, without a
// reload.
func TestWebUIDashboardIsTheUsersAndLive(t *testing.T) {
	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	secret := u.addDevice(store.Device{ID: "pump-a", Name: "Pump A", Groups: []string{"plant-a"}})
	u.addDevice(store.Device{ID: "pump-b", Groups: []string{"plant-b"}})
	u.signIn("alice", "alice-pass")
	page := u.text()
	if !strings.Contains(page, "Pump A") || strings.Contains(page, "pump-b") {
		t.Fatalf("alice's dashboard:\n%s", page)
	}
	if u.dotOn("pump-a") {
		t.Fatal("pump-a shows online before its agent runs")
	}
	stop := u.runAgent("pump-a", secret, 80)
	waitFor(t, func() bool { return u.dotOn("pump-a") })
	u.waitText("online since", 10*time.Second)
	u.shot("dashboard")
	stop()
	waitFor(t, func() bool { return !u.dotOn("pump-a") })
	u.waitText("last seen", 10*time.Second)
}
