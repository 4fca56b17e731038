package integration

// Real-browser tests (issue 4): headless Chromium, driven over the DevTools
// protocol with chromedp, logs in and browses a device through its
// subdomain, and reaches devices through the reflector as the proxy its PAC
// file names. They need Debian's chromium package (/usr/bin/chromium), which
// .ci/run installs; without it they skip, except under CI=true, where they
// fail.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// TestBrowserLogsInAndSeesADevicePage opens a device's subdomain in a
// browser that has no session: the reflector sends it through the admin
// host's hand-off to the login page, and after the password it lands on the
// device's page. The session then survives a reload, and the reflector's
// cookies are out of reach of the device page's scripts and never reach the
// device.
func TestBrowserLogsInAndSeesADevicePage(t *testing.T) {
	requireChromium(t)
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	ui := newPumpUI(t, "pump web ui", false)
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{ui.port}, HTTPPort: ui.port})
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	adminHost := "localhost:" + port
	deviceURL := "https://dev1.localhost:" + port + "/" // Chromium resolves *.localhost to loopback itself

	b := newBrowser(t)
	b.step(15*time.Second, "open the device page without a session", chromedp.Navigate(deviceURL))
	if loc := b.location(); !strings.HasPrefix(loc, "https://"+adminHost+"/") {
		b.fatalf("without a session the browser ended on %s, want the login page on %s", loc, adminHost)
	}
	b.step(15*time.Second, "log in",
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "alice-pass"),
		chromedp.Click(chromedp.CSS(`form [type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("pump")),
	)
	b.assertPumpPage(deviceURL, "pump web ui")

	// The device's own session carries a reload: with the admin host's
	// session gone, a silent trip through the hand-off would end on the
	// login page.
	adminCookies := b.cookies("https://" + adminHost + "/")
	if len(adminCookies) == 0 {
		t.Fatal("the browser holds no session cookie for the admin host after the login")
	}
	for _, c := range adminCookies {
		run(b, "forget the admin session", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: c.Name, URL: "https://" + adminHost + "/"})
			return err
		}))
	}
	b.step(15*time.Second, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("pump")))
	b.assertPumpPage(deviceURL, "pump web ui")
	if n := ui.count(); n != 2 {
		t.Fatalf("the device served its page %d times, want 2 (after the login, on the reload)", n)
	}

	// The reflector's cookies for the device host are HttpOnly, Secure,
	// SameSite=Lax and host-only; the page's scripts see only the device's
	// own cookie.
	cookies := b.cookies(deviceURL)
	script := run(b, "read document.cookie", chromedp.Evaluate[string](`document.cookie`))
	if script != pumpCookie {
		t.Errorf("document.cookie on the device page = %q, want only the device's own %q", script, pumpCookie)
	}
	var reflectorCookies []string
	for _, c := range cookies {
		if c.Name+"="+c.Value == pumpCookie {
			continue
		}
		reflectorCookies = append(reflectorCookies, c.Name)
		if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Domain != "dev1.localhost" {
			t.Errorf("reflector cookie %s: HttpOnly %v, Secure %v, SameSite %q, domain %q; want HttpOnly, Secure, Lax, host-only dev1.localhost",
				c.Name, c.HTTPOnly, c.Secure, c.SameSite, c.Domain)
		}
	}
	if len(reflectorCookies) == 0 {
		t.Fatalf("the browser holds no reflector cookie for %s (cookies: %+v)", deviceURL, cookies)
	}
	seen := ui.requests()
	for _, r := range seen {
		for _, name := range reflectorCookies {
			if strings.Contains(r.cookie, name+"=") {
				t.Errorf("the device received the reflector's cookie %s: Cookie %q", name, r.cookie)
			}
		}
	}
	if last := seen[len(seen)-1]; last.cookie != pumpCookie {
		t.Errorf("the device's own cookie did not reach it on the reload: Cookie %q, want %q", last.cookie, pumpCookie)
	}
}

// TestBrowserUsesThePACFile starts the browser with the reflector's PAC file
// as its only proxy set-up and loads device pages by their subdomain: an
// http:// page, which the browser sends to the proxy as an absolute-form
// request, and an https:// page of a device that serves TLS itself, which
// it tunnels with CONNECT. The proxy asks for credentials (407) and the
// browser answers as a user would in its dialog. The device's names do not
// resolve for the browser, so the pages can only have come through the
// reflector, and its audit log says so.
//
// The domain is not localhost: Chromium sends *.localhost (like every
// loopback name) DIRECT whatever a PAC file says, and --proxy-bypass-list
// ("<-loopback>") only changes manually configured proxies, not PAC
// results (Chromium's net/docs/proxy.md).
//
// The https:// page uses the device's own high port: device port 443 would
// mean binding 443 on the test machine. It reaches the reflector as
// CONNECT dev1.reflector.test:<port>, the same path as :443.
func TestBrowserUsesThePACFile(t *testing.T) {
	requireChromium(t)
	const domain = "reflector.test" // RFC 6761: never a real name
	s := newStackConfig(t, server.Config{Domain: domain})
	s.addUser("alice", "alice-pass", false, "plant-a")
	web := newPumpUI(t, "pump web ui", false)
	own := newPumpUI(t, "pump web ui over its own https", true)
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{web.port, own.port}, HTTPPort: web.port})
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	pacURL := "https://" + domain + ":" + port + "/proxy.pac"
	t.Logf("PAC file at %s:\n%s", pacURL, s.fetchPAC(pacURL))

	b := newBrowser(t,
		chromedp.Flag("proxy-pac-url", pacURL),
		// The reflector's own name is 127.0.0.1; no other name resolves, so
		// DIRECT cannot reach a device.
		chromedp.Flag("host-resolver-rules", "MAP "+domain+" 127.0.0.1, MAP * ~NOTFOUND"),
	)
	challenges := b.answerProxyAuth("https://"+domain+":"+port, "alice", "alice-pass")

	httpURL := "http://dev1." + domain + "/"
	b.step(15*time.Second, "load "+httpURL, chromedp.Navigate(httpURL), chromedp.WaitVisible(chromedp.ID("pump")))
	b.assertPumpPage(httpURL, "pump web ui")
	httpsURL := "https://dev1." + domain + ":" + strconv.Itoa(int(own.port)) + "/"
	b.step(15*time.Second, "load "+httpsURL, chromedp.Navigate(httpsURL), chromedp.WaitVisible(chromedp.ID("pump")))
	b.assertPumpPage(httpsURL, "pump web ui over its own https")
	if challenges.Load() == 0 {
		t.Error("the pages loaded without the proxy asking for credentials")
	}
	for _, ui := range []*pumpUI{web, own} {
		if reqs := ui.requests(); len(reqs) == 0 || !strings.HasPrefix(reqs[0].host, "dev1."+domain) {
			t.Errorf("device port %d: requests %+v, want the page for dev1.%s", ui.port, reqs, domain)
		}
	}

	// The CONNECT stream is audited when it closes, that is when the
	// browser lets its connection go: close the browser.
	b.close()
	var request, stream bool
	waitFor(t, func() bool {
		for _, ev := range s.auditEvents("") {
			if ev.User != "alice" || ev.Device != "dev1" {
				continue
			}
			request = request || ev.Kind == store.AuditRequest && ev.Port == web.port && ev.OK
			stream = stream || ev.Kind == store.AuditStream && ev.Port == own.port && ev.BytesDown > 0
		}
		return request && stream
	})
}

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds each browser test from Chromium's start.
const browserTimeout = 60 * time.Second

// browser is a headless Chromium with one tab, for one test.
type browser struct {
	t       *testing.T
	tab     context.Context // chromedp context of the tab
	dataDir string          // --user-data-dir, fresh for each browser
	out     lockedBuffer    // Chromium's stdout and stderr

	listeners sync.WaitGroup // goroutines answering the fetch domain's events
	closeOnce sync.Once
	stop      func()
}

// requireChromium skips the test when Chromium is not installed, unless
// CI=true (skipUnlessCI): .ci/run installs it.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		skipUnlessCI(t, "%s not installed (Debian: apt-get install --no-install-recommends chromium): %v", chromiumPath, err)
	}
}

// newBrowser starts Chromium (see requireChromium) with the flags every
// test needs and extra ones. Cleanup closes the browser, makes sure none of
// its processes is left and, when the test failed, prints what Chromium
// wrote.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	requireChromium(t)
	b := &browser{t: t, dataDir: t.TempDir()}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], // headless, no first run, no background networking or sync
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(b.dataDir),
		chromedp.NoSandbox,  // as root in containers the sandbox cannot start
		chromedp.DisableGPU, // no GPU here
		chromedp.IgnoreCertErrors,
		// This machine's network is closed: Chromium's own calls home are
		// refused, many at a time, and QUIC probes time out.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.CombinedOutput(&b.out),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(opts, extra...)...)
	tab, cancelTab := chromedp.NewContext(alloc)
	b.tab = tab
	b.stop = func() {
		chromedp.Cancel(tab) // asks Chromium to close and waits for it
		cancelTab()
		cancelAlloc() // kills it if it did not close, and waits
		cancelTimeout()
		b.listeners.Wait()
		b.killLeftovers()
	}
	t.Cleanup(func() {
		b.close()
		if t.Failed() {
			t.Logf("Chromium's output (D-Bus complaints left out):\n%s", b.output())
		}
	})
	if err := chromedp.Do(tab); err != nil { // starts Chromium, opens the tab
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

// close closes the browser; later calls do nothing.
func (b *browser) close() { b.closeOnce.Do(b.stop) }

// killLeftovers kills the processes of this browser that outlived it, which
// carry its --user-data-dir, until none shows up for a few looks in a row
// (a child can fork as its parent dies).
func (b *browser) killLeftovers() {
	want := []byte("--user-data-dir=" + b.dataDir)
	killed := 0
	for quiet := 0; quiet < 3; time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		found := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && bytes.Contains(cmdline, want) {
				syscall.Kill(pid, syscall.SIGKILL)
				found++
			}
		}
		if found == 0 {
			quiet++
		} else {
			quiet = 0
			killed += found
		}
	}
	if killed > 0 {
		b.t.Logf("killed %d Chromium processes left after the browser closed", killed)
	}
}

// output is what Chromium wrote, without its lines about the D-Bus that
// containers do not have.
func (b *browser) output() string {
	var keep []string
	for line := range strings.Lines(b.out.String()) {
		if !strings.Contains(line, "dbus") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// step runs actions in the tab within limit and fails the test, showing
// where the browser is, if they do not complete.
func (b *browser) step(limit time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, limit)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%s: %v", what, err)
	}
}

// click clicks the element sel within limit. DevTools answers "Could not
// find node with given id" or "No node with given id found" when the query
// raced a document update (a navigation that was still settling); the
// click did not happen then, so it is tried again on the new document.
func (b *browser) click(limit time.Duration, sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, limit)
	defer cancel()
	for {
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if stale := strings.Contains(err.Error(), "Could not find node with given id") || strings.Contains(err.Error(), "No node with given id found"); !stale || ctx.Err() != nil {
			b.fatalf("click %s: %v", sel, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits until the document has loaded completely.
func (b *browser) settle(limit time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	for !run(b, "read the document's state", chromedp.Evaluate[bool](`document.readyState === "complete"`)) {
		if time.Now().After(deadline) {
			b.fatalf("the page did not finish loading within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs one action that returns a value, failing the test on an error.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fatalf("%s: %v", what, err)
	}
	return v
}

// fatalf fails the test with where the browser is and what it shows.
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if len(text) > 2000 {
		text = text[:2000] + "…"
	}
	b.t.Fatalf("%s\nbrowser at %s showing:\n%s", fmt.Sprintf(format, args...), loc, text)
}

// cookies returns every cookie the browser would send to url, HttpOnly
// ones included.
func (b *browser) cookies(url string) []*network.Cookie {
	b.t.Helper()
	return run(b, "read the cookies for "+url, func(ctx context.Context, _ *chromedp.Target) ([]*network.Cookie, error) {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		return res.Cookies, err
	})
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "read the location", chromedp.Location())
}

// assertPumpPage checks that the tab shows pumpUI's page with text, at url.
func (b *browser) assertPumpPage(url, text string) {
	b.t.Helper()
	if loc := b.location(); loc != url {
		b.fatalf("location %s, want %s", loc, url)
	}
	if title := run(b, "read the title", chromedp.Title()); title != pumpTitle {
		b.t.Errorf("title %q, want %q", title, pumpTitle)
	}
	if got := run(b, "read the page", chromedp.Text(chromedp.ID("pump"))); got != text {
		b.t.Errorf("page says %q, want %q", got, text)
	}
}

// answerProxyAuth makes the browser answer a 407 from the proxy at origin
// with user and password, as a user does in the browser's dialog, and any
// other challenge with Cancel. It returns the count of proxy challenges
// answered. The fetch domain pauses every request of the tab; they are let
// go unchanged.
func (b *browser) answerProxyAuth(origin, user, password string) *atomic.Int32 {
	b.t.Helper()
	var answered atomic.Int32
	paused := chromedp.Events(b.tab, fetch.RequestPaused) // subscribed before Fetch.enable
	auth := chromedp.Events(b.tab, fetch.AuthRequired)
	b.listeners.Add(2)
	go func() {
		defer b.listeners.Done()
		for ev, err := range paused { // ends with the tab
			if err != nil {
				return
			}
			chromedp.Call(b.tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		defer b.listeners.Done()
		for ev, err := range auth {
			if err != nil {
				return
			}
			answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if c := ev.AuthChallenge; c != nil && c.Source == fetch.AuthChallengeSourceProxy && c.Origin == origin {
				answer = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: password}
				answered.Add(1)
			}
			chromedp.Call(b.tab, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: answer})
		}
	}()
	yes := true
	if _, err := chromedp.Call(b.tab, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &yes}); err != nil {
		b.t.Fatalf("Fetch.enable: %v", err)
	}
	return &answered
}

// lockedBuffer is a bytes.Buffer that Chromium's output goroutine writes
// while the test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// The device's page: its title, and the cookie it sets for itself, which
// scripts may read.
const (
	pumpTitle  = "Pump 17"
	pumpCookie = "pump_units=metric"
)

// pumpUI is a device's web interface on 127.0.0.1, over TLS of its own
// (self-signed) or plain HTTP. It serves one page, #pump with its text, and
// records what reaches it.
type pumpUI struct {
	port uint16
	mu   sync.Mutex
	seen []pumpRequest
}

type pumpRequest struct{ host, path, cookie string }

func newPumpUI(t testing.TB, text string, ownTLS bool) *pumpUI {
	ui := &pumpUI{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ui.mu.Lock()
		ui.seen = append(ui.seen, pumpRequest{host: r.Host, path: r.URL.Path, cookie: r.Header.Get("Cookie")})
		ui.mu.Unlock()
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Set-Cookie", pumpCookie+"; Path=/")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>%s</title><h1 id=pump>%s</h1>\n", pumpTitle, text)
	}))
	if ownTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	ui.port = uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	return ui
}

// requests returns the requests for the page itself (not /favicon.ico).
func (ui *pumpUI) requests() []pumpRequest {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	var page []pumpRequest
	for _, r := range ui.seen {
		if r.path == "/" {
			page = append(page, r)
		}
	}
	return page
}

func (ui *pumpUI) count() int { return len(ui.requests()) }

// fetchPAC gets the PAC file the way the browser will, from the reflector's
// name (which resolves nowhere but here), so that a missing PAC fails with
// its status rather than as a browser that went DIRECT.
func (s *stack) fetchPAC(url string) string {
	s.t.Helper()
	addr := s.srv.Addr().String()
	host := strings.TrimPrefix(url, "https://")
	host = host[:strings.IndexAny(host, ":/")]
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: host},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		s.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("FindProxyForURL")) {
		s.t.Fatalf("GET %s: %s, no PAC file:\n%s", url, resp.Status, body)
	}
	return string(body)
}
