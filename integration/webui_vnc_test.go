package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// The VNC viewer (issue 19) against a real VNC server: an X display of its
// own (Xvfb) painted one colour (xsetroot), served by x11vnc without and
// with a password behind a real agent, and by a third x11vnc for the
// device's side of the clipboard. Debian's xvfb, x11vnc,
// x11-xserver-utils and chromium, which .ci/run installs; without them the
// test skips, except under CI=true.

// desktopColour is the X display's background, and what the viewer's canvas
// must show: #1e90ff.
var desktopColour = [3]int{0x1e, 0x90, 0xff}

// vncPassword is the password-protected x11vnc's.
const vncPassword = "vnc-secret"

// desktop is an Xvfb display with x11vnc servers on it.
type desktop struct {
	display string // ":N"
}

// startDesktop starts Xvfb on a free display (it picks the number itself,
// -displayfd) and paints its background. Cleanup ends it.
func startDesktop(t *testing.T) *desktop {
	t.Helper()
	xvfb := requireCommand(t, "Xvfb", "xvfb")
	xsetroot := requireCommand(t, "xsetroot", "x11-xserver-utils")
	requireCommand(t, "x11vnc", "x11vnc")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// -noreset: without it the server resets when its last client leaves,
	// xsetroot's background with it.
	cmd := exec.Command(xvfb, "-displayfd", "3", "-noreset", "-nolisten", "tcp", "-screen", "0", "1024x640x24")
	cmd.ExtraFiles = []*os.File{w}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		w.Close()
		skipUnlessCI(t, "start Xvfb: %v", err)
	}
	w.Close()
	stopProcess(t, cmd, "Xvfb", &out)
	// Xvfb writes the display's number when it accepts clients.
	number := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		number <- strings.TrimSpace(line)
	}()
	var n string
	select {
	case n = <-number:
	case <-time.After(15 * time.Second):
		t.Fatalf("Xvfb named no display within 15 s:\n%s", out.String())
	}
	if _, err := strconv.Atoi(n); err != nil {
		t.Fatalf("Xvfb's display number %q: %v\n%s", n, err, out.String())
	}
	d := &desktop{display: ":" + n}
	if b, err := exec.Command(xsetroot, "-display", d.display, "-solid", fmt.Sprintf("#%02x%02x%02x", desktopColour[0], desktopColour[1], desktopColour[2])).CombinedOutput(); err != nil {
		t.Fatalf("xsetroot: %v: %s", err, b)
	}
	return d
}

// vncServer starts x11vnc on the display, on a free loopback port, with a
// password if one is given, and returns its port once it greets.
func (d *desktop) vncServer(t *testing.T, password string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"-display", d.display, "-rfbport", strconv.Itoa(port), "-localhost", "-forever", "-shared", "-norc", "-quiet"}
	if password != "" {
		args = append(args, "-passwd", password)
	} else {
		args = append(args, "-nopw")
	}
	cmd := exec.Command("x11vnc", args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start x11vnc: %v", err)
	}
	stopProcess(t, cmd, "x11vnc", &out)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			greeting, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(greeting, "RFB ") {
				return uint16(port)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("x11vnc on %s did not greet within 15 s (%v):\n%s", addr, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopProcess ends cmd, which the test started, when the test ends, and
// prints what it wrote if the test failed.
func stopProcess(t *testing.T, cmd *exec.Cmd, name string, out *lockedBuffer) {
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, out.String())
		}
	})
}

// canvasColour is the colour of the pixel at (x, y) of the first canvas
// under sel, as [r, g, b], or nil if there is none yet.
func (u *webUI) canvasColour(sel string, x, y int) []int {
	u.t.Helper()
	return run(u.b, "read the canvas", chromedp.Evaluate[[]int](fmt.Sprintf(`(() => {
		const c = document.querySelector(%s);
		if (!c || c.width <= %d || c.height <= %d) { return null; }
		const d = c.getContext("2d").getImageData(%d, %d, 1, 1).data;
		return [d[0], d[1], d[2]];
	})()`, jsString(sel), x, y, x, y)))
}

// waitColour waits until the canvas under sel shows the desktop's colour at
// a few points away from the middle (where a cursor might be drawn).
func (u *webUI) waitColour(sel string) {
	u.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got []int
	for {
		ok := true
		for _, p := range [][2]int{{5, 5}, {1000, 20}, {20, 600}} {
			got = u.canvasColour(sel, p[0], p[1])
			ok = ok && near(got, desktopColour)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			u.b.fatalf("the canvas under %s shows %v, want the desktop's %v", sel, got, desktopColour)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// near reports whether got is want within a little (noVNC may ask for a
// lossy encoding).
func near(got []int, want [3]int) bool {
	if len(got) != 3 {
		return false
	}
	for i := range want {
		if d := got[i] - want[i]; d < -8 || d > 8 {
			return false
		}
	}
	return true
}

// vncState waits until the viewer's state is want (connecting, connected,
// disconnected) and returns the state's text.
func (u *webUI) vncState(want string, limit time.Duration) string {
	u.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := run(u.b, "read the viewer's state", chromedp.Evaluate[[]string](`(() => {
			const e = document.getElementById("vnc-state");
			return e ? [e.dataset.state, e.textContent.trim()] : ["", ""];
		})()`))
		state := st[0]
		if state == want {
			return st[1]
		}
		if time.Now().After(deadline) {
			u.b.fatalf("the viewer is %q after %s, want %q", state, limit, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebUIVNC opens a device's VNC server in the browser every way there
// is, against one display with x11vnc servers on it: the viewer from the
// device page's button (connected, the desktop's colour on its canvas,
// listed and audited as web-vnc, the clipboard both ways), the password
// asked for in the page,
// noVNC's own app on the device host with macchina.io's path, a device
// host's page trying the viewer's WebSocket (refused, nothing dialled), and
// a user whose access is taken away mid-session (disconnected).
func TestWebUIVNC(t *testing.T) {
	requireChromium(t)
	d := startDesktop(t)
	open := d.vncServer(t, "")
	locked := d.vncServer(t, vncPassword)
	// The device's side of the clipboard: a third x11vnc on the display,
	// spoken to directly.
	peer := dialRFB(t, d.vncServer(t, ""))
	// A device port the refused attempts aim at.
	trap := listenCounting(t)
	// The device's own web UI: a page the reflector does not control, as an
	// attacker's would be.
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>pump 17</title><h1 id="pump">pump 17</h1>`)
	}))

	u := newWebUI(t, server.Config{})
	u.addUser("alice", "alice-pass", false, "plant-a")
	secret := u.addDevice(store.Device{ID: "pump-17", Name: "Pump 17", Groups: []string{"plant-a"}})
	u.runAgentConfig(agent.Config{DeviceID: "pump-17", Secret: secret, Ports: []uint16{open, locked, trap.port(), web}, VNCPort: open, HTTPPort: web})
	waitFor(t, func() bool { return u.online("pump-17") })
	u.b.step(10*time.Second, "desktop viewport", chromedp.EmulateViewport(1280, 860))
	u.signIn("alice", "alice-pass")

	// The device page's button opens the viewer on the agent's vncPort.
	u.open("/devices/pump-17")
	u.click(`a[href="/devices/pump-17/vnc"]`, "#vnc-screen", false)
	if s := u.vncState("connected", 20*time.Second); !strings.Contains(s, "Connected") {
		t.Errorf("state text %q", s)
	}
	u.waitColour("#vnc-screen canvas")
	streams, err := u.srv.Ops().DeviceStreams(context.Background(), ops.Local(), "pump-17")
	if err != nil || len(streams) != 1 || streams[0].Via != "web-vnc" || streams[0].Port != open || streams[0].User != "alice" {
		t.Errorf("streams %+v (%v), want alice's one web-vnc stream to port %d", streams, err, open)
	}
	u.b.click(5*time.Second, "#vnc-cad") // keys to the device; nothing to see on a bare display

	// The clipboard both ways, through the display's selection: what the
	// peer puts there shows in the page, what the page sends reaches the
	// peer.
	run(u.b, "open the clipboard", chromedp.Evaluate[bool](`document.querySelector(".vnc-clipboard").open = true`))
	peer.sendCutText(t, "copied on pump 17")
	deadline := time.Now().Add(15 * time.Second)
	for run(u.b, "read the clipboard", chromedp.Evaluate[string](`document.getElementById("vnc-clipboard-text").value`)) != "copied on pump 17" {
		if time.Now().After(deadline) {
			u.b.fatalf("the device's clipboard did not show in the page within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.fill("#vnc-clipboard-text", "pasted from the browser")
	u.b.click(5*time.Second, "#vnc-clipboard-send")
	peer.waitCutText(t, "pasted from the browser")
	u.shot("vnc-viewer")

	// Another port of the device's, with a password: the page asks for it,
	// and it goes to noVNC only.
	u.open(fmt.Sprintf("/devices/pump-17/vnc?port=%d", locked))
	u.b.step(20*time.Second, "wait for the password form", chromedp.WaitVisible(chromedp.ID("vnc-password")))
	u.shot("vnc-password")
	u.b.step(10*time.Second, "type the VNC password",
		chromedp.SendKeys(chromedp.ID("vnc-password"), vncPassword),
		chromedp.Click(chromedp.CSS(`#vnc-credentials button[type=submit]`)))
	u.vncState("connected", 20*time.Second)
	u.waitColour("#vnc-screen canvas")
	if loc := u.b.location(); strings.Contains(loc, vncPassword) {
		t.Errorf("the password is in the URL %s", loc)
	}

	// The stream of the first viewer ended when the page was left: audited
	// as web-vnc, with its bytes.
	waitFor(t, func() bool {
		for _, ev := range u.auditEvents(store.AuditStream) {
			if ev.User == "alice" && ev.Device == "pump-17" && ev.Port == open && ev.Reason == "web-vnc" && ev.BytesDown > 0 {
				return true
			}
		}
		return false
	})

	// noVNC's own app on the device host, with macchina.io's path, as
	// bookmarks of macchina.io REMOTE have it. Its session comes through the
	// hand-off, silently, since alice is signed in.
	deviceOrigin := "https://pump-17.localhost:" + u.port
	novnc := deviceOrigin + "/.reflector/novnc/vnc.html?path=" + "my-devices/websockify%3Fport%3D" + strconv.Itoa(int(open)) + "&autoconnect=true"
	u.b.step(30*time.Second, "open noVNC's app on the device host", chromedp.Navigate(novnc))
	deadline = time.Now().Add(20 * time.Second)
	for !run(u.b, "read noVNC's state", chromedp.Evaluate[bool](`document.documentElement.classList.contains("noVNC_connected")`)) {
		if time.Now().After(deadline) {
			u.b.fatalf("noVNC's app did not connect within 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.waitColour("#noVNC_container canvas")
	u.shot("vnc-novnc-app")

	run(u.b, "disconnect noVNC", chromedp.Evaluate[bool](`document.getElementById("noVNC_disconnect_button").click(), true`))
	deadline = time.Now().Add(10 * time.Second)
	for !run(u.b, "read noVNC's state", chromedp.Evaluate[bool](`!document.documentElement.matches(".noVNC_connected, .noVNC_disconnecting")`)) {
		if time.Now().After(deadline) {
			u.b.fatalf("noVNC's app did not disconnect within 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The attack: a page of the device host (the device's own web UI, which
	// the reflector does not control) opens the admin host's viewer socket;
	// the browser sends alice's admin session along. 403 before any stream.
	u.b.step(20*time.Second, "open the device's web UI", chromedp.Navigate(deviceOrigin+"/"), chromedp.WaitVisible(chromedp.ID("pump")))
	attack := fmt.Sprintf("%s/devices/pump-17/vnc/websocket?port=%d", strings.Replace(u.base, "https://", "wss://", 1), trap.port())
	u.expectConsole(attack + "' failed") // the browser reports the refusal
	run(u.b, "open the viewer's socket from the device's page", chromedp.Evaluate[bool](`(() => {
		window.__attack = "pending";
		const ws = new WebSocket(`+jsString(attack)+`);
		ws.onopen = () => { window.__attack = "opened"; ws.close(); };
		ws.onclose = () => { if (window.__attack === "pending") { window.__attack = "refused"; } };
		return true;
	})()`))
	var outcome string
	deadline = time.Now().Add(10 * time.Second)
	for outcome = "pending"; outcome == "pending" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		outcome = run(u.b, "read the attack's outcome", chromedp.Evaluate[string](`window.__attack`))
	}
	if outcome != "refused" {
		t.Errorf("a page of the device host opening the viewer's WebSocket on the admin host: %s, want refused (trap dialled %d times)", outcome, trap.accepted.Load())
	}
	if code := u.vncSocketStatus(attack, deviceOrigin); code != http.StatusForbidden {
		t.Errorf("the viewer's socket from the device host's origin, with the session: %d, want 403", code)
	}
	if code := u.vncSocketStatus(attack, u.base); code != http.StatusSwitchingProtocols {
		t.Errorf("the same from the admin host's origin: %d, want 101", code)
	}
	waitFor(t, func() bool { return trap.accepted.Load() == 1 }) // only the last
	time.Sleep(200 * time.Millisecond)
	if n := trap.accepted.Load(); n != 1 {
		t.Errorf("the trap port was dialled %d times, want once (the admin host's own page)", n)
	}

	// Taking alice's access away ends her session: the page says so.
	u.open("/devices/pump-17/vnc")
	u.vncState("connected", 20*time.Second)
	u.expectConsole("Unexpected server disconnect")
	u.admin("user", "set", "alice", "--no-groups")
	if s := u.vncState("disconnected", 10*time.Second); !strings.Contains(s, "Disconnected") {
		t.Errorf("state text after revocation %q", s)
	}
	waitFor(t, func() bool {
		for _, ev := range u.auditEvents(store.AuditStream) {
			if ev.User == "alice" && strings.HasPrefix(ev.Reason, "web-vnc: ") && strings.Contains(ev.Reason, "access revoked") {
				return true
			}
		}
		return false
	})
}

// vncSocketStatus opens the viewer's WebSocket url outside the browser with
// its admin session, from a page of origin, and returns the status.
func (u *webUI) vncSocketStatus(url, origin string) int {
	u.t.Helper()
	var session string
	for _, c := range u.b.cookies(u.base + "/") {
		if c.Name == admin.SessionCookie {
			session = c.Value
		}
	}
	addr := u.srv.Addr().String()
	dialer := websocket.Dialer{
		TLSClientConfig: &tls.Config{RootCAs: u.pool, ServerName: "localhost"},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		HandshakeTimeout: 10 * time.Second,
	}
	h := http.Header{"Origin": {origin}, "Cookie": {admin.SessionCookie + "=" + session}}
	c, resp, err := dialer.Dial(url, h)
	if c != nil {
		c.Close()
	}
	if resp == nil {
		u.t.Fatalf("dial %s: %v", url, err)
	}
	return resp.StatusCode
}

// rfbPeer is a small VNC client on the device's side of the clipboard test:
// it speaks to an x11vnc on the same display directly (RFB 3.8, no
// password, no pictures asked for), so that what one x11vnc puts on the
// display's clipboard the other hands to its clients.
type rfbPeer struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRFB(t *testing.T, port uint16) *rfbPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &rfbPeer{c: c, br: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	fail := func(step string, err error) {
		t.Helper()
		t.Fatalf("RFB peer: %s: %v", step, err)
	}
	version := make([]byte, 12)
	if _, err := io.ReadFull(p.br, version); err != nil {
		fail("version", err)
	}
	if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
		fail("version", err)
	}
	n, err := p.br.ReadByte()
	if err != nil || n == 0 {
		fail("security types", fmt.Errorf("%d types: %v", n, err))
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(p.br, types); err != nil || !slices.Contains(types, 1) {
		fail("security types", fmt.Errorf("%v without None: %v", types, err))
	}
	if _, err := c.Write([]byte{1, 1}); err != nil { // None, then ClientInit: shared
		fail("security", err)
	}
	// SecurityResult (4), ServerInit: width, height (4), pixel format (16),
	// name length (4) and name.
	head := make([]byte, 4+4+16+4)
	if _, err := io.ReadFull(p.br, head); err != nil || binary.BigEndian.Uint32(head) != 0 {
		fail("security result and server init", fmt.Errorf("%x: %v", head, err))
	}
	if _, err := p.br.Discard(int(binary.BigEndian.Uint32(head[24:]))); err != nil {
		fail("desktop name", err)
	}
	return p
}

// sendCutText puts text on the server's clipboard (ClientCutText).
func (p *rfbPeer) sendCutText(t *testing.T, text string) {
	t.Helper()
	msg := binary.BigEndian.AppendUint32([]byte{6, 0, 0, 0}, uint32(len(text)))
	if _, err := p.c.Write(append(msg, text...)); err != nil {
		t.Fatalf("RFB peer: cut text: %v", err)
	}
}

// waitCutText reads the server's messages until a ServerCutText of want.
func (p *rfbPeer) waitCutText(t *testing.T, want string) {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer p.c.SetReadDeadline(time.Time{})
	var got []string
	for {
		kind, err := p.br.ReadByte()
		if err != nil {
			t.Fatalf("RFB peer: waiting for the cut text %q (got %q): %v", want, got, err)
		}
		switch kind {
		case 2: // Bell
			continue
		case 3: // ServerCutText: padding, length, text
			head := make([]byte, 7)
			if _, err := io.ReadFull(p.br, head); err != nil {
				t.Fatalf("RFB peer: cut text: %v", err)
			}
			text := make([]byte, binary.BigEndian.Uint32(head[3:]))
			if _, err := io.ReadFull(p.br, text); err != nil {
				t.Fatalf("RFB peer: cut text: %v", err)
			}
			if string(text) == want {
				return
			}
			got = append(got, string(text))
		default:
			t.Fatalf("RFB peer: unexpected message type %d", kind)
		}
	}
}
