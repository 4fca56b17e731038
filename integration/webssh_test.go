package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
)

// The SSH terminal in the browser (docs/web-ssh.md), end to end: a real
// SSH server on the device's side behind a real agent, a real reflector,
// headless Chromium on the terminal page.

// deviceSSHD is a real SSH server on 127.0.0.1, the device's: user "pi",
// password "raspberry"; a shell request runs bash on the channel
// (runDeviceShell).
type deviceSSHD struct {
	t    *testing.T
	ln   net.Listener
	port uint16

	mu        sync.Mutex
	key       ssh.Signer
	passwords int // password attempts that reached the server
	conns     int // TCP connections accepted
}

func newDeviceSSHD(t *testing.T) *deviceSSHD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deviceSSHD{t: t, ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	d.newKey()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns++
			d.mu.Unlock()
			go d.handle(c)
		}
	}()
	return d
}

// newKey gives the server a new host key: the device reinstalled, or
// someone else answering on its port.
func (d *deviceSSHD) newKey() {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.key = s
	d.mu.Unlock()
}

func (d *deviceSSHD) counts() (passwords, conns int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passwords, d.conns
}

func (d *deviceSSHD) handle(c net.Conn) {
	defer c.Close()
	cfg := &ssh.ServerConfig{PasswordCallback: func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		d.mu.Lock()
		d.passwords++
		d.mu.Unlock()
		if m.User() == "pi" && string(pw) == "raspberry" {
			return nil, nil
		}
		return nil, fmt.Errorf("wrong password for %q", m.User())
	}}
	d.mu.Lock()
	cfg.AddHostKey(d.key)
	d.mu.Unlock()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for req := range creqs {
				switch req.Type {
				case "shell":
					req.Reply(true, nil)
					go runDeviceShell(ch)
				case "pty-req", "env":
					req.Reply(true, nil)
				default:
					req.Reply(false, nil)
				}
			}
		}()
	}
}

// runDeviceShell runs bash on ch until it exits, and sends its exit status.
// bash runs on a pty of its own, made by util-linux's script, as a device's
// sshd would give it one (line editing, echo, CR to LF and LF to CR LF);
// without script, bash reads pipes and carriage returns become newlines
// here.
func runDeviceShell(ch ssh.Channel) {
	defer ch.Close()
	bash := []string{"/bin/bash", "--noprofile", "--norc", "-i"}
	cmd := exec.Command(bash[0], bash[1:]...)
	crlf := true
	if script, err := exec.LookPath("script"); err == nil {
		// script runs its command with sh -c, which would drop PS1.
		cmd = exec.Command(script, "-qfec", "PS1='pi@pump-17:~$ ' exec "+strings.Join(bash, " "), "/dev/null")
		crlf = false
	}
	cmd.Env = append(os.Environ(), "PS1=pi@pump-17:~$ ", "TERM=xterm-256color")
	cmd.Stdout, cmd.Stderr = ch, ch
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ch.Read(buf)
			if n > 0 {
				b := buf[:n]
				if crlf {
					b = bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
				}
				stdin.Write(b)
			}
			if err != nil {
				stdin.Close()
				return
			}
		}
	}()
	status := uint32(0)
	if err := cmd.Run(); err != nil {
		status = 1
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
}

// sshTerminalSetup is a reflector with root (admin) and alice (plant-a),
// device pump-17 in plant-a whose agent declares the SSH server's port as
// sshPort.
func sshTerminalSetup(t *testing.T, u *webUI) *deviceSSHD {
	t.Helper()
	u.addUser("root", "root-pass", true)
	u.addUser("alice", "alice-pass", false, "plant-a")
	secret := u.addDevice(store.Device{ID: "pump-17", Name: "Pump 17", Groups: []string{"plant-a"}})
	sshd := newDeviceSSHD(t)
	u.runAgentConfig(agent.Config{DeviceID: "pump-17", Secret: secret, Ports: []uint16{sshd.port}, SSHPort: sshd.port})
	waitFor(t, func() bool { return u.online("pump-17") })
	return sshd
}

// sshLogin fills the terminal page's login form and sends it.
func (u *webUI) sshLogin(user, password string) {
	u.t.Helper()
	u.b.step(20*time.Second, "log in on the device",
		chromedp.WaitEnabled(chromedp.CSS(`#ssh-login button[type=submit]`)),
		chromedp.SetValue(chromedp.CSS(`#ssh-user`), user),
		chromedp.SetValue(chromedp.CSS(`#ssh-password`), password),
		chromedp.Click(chromedp.CSS(`#ssh-login button[type=submit]`)),
	)
}

// sshState waits until the terminal page's state is want.
func (u *webUI) sshState(want string) {
	u.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := run(u.b, "read the terminal's state", chromedp.Evaluate[string](`(document.getElementById("ssh") || {dataset: {}}).dataset.state || ""`))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			u.b.fatalf("terminal state %q, want %q; page:\n%s", got, want, u.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminalText is what the terminal shows: the rows xterm.js renders.
func (u *webUI) terminalText() string {
	u.t.Helper()
	return run(u.b, "read the terminal", chromedp.Evaluate[string](`(document.querySelector("#terminal .xterm-rows") || {}).innerText || ""`))
}

// typeInTerminal types text into the terminal and, with enter, presses
// Enter. The text goes in as the browser's text input (Input.insertText,
// what a keyboard's characters become), Enter as a key: chromedp's
// SendKeys sends each printable key as a keyDown and a separate char
// event, which xterm.js takes as two keys.
func (u *webUI) typeInTerminal(text string, enter bool) {
	u.t.Helper()
	u.b.step(10*time.Second, "focus the terminal", chromedp.Focus(chromedp.CSS(`#terminal textarea`)))
	ctx, cancel := context.WithTimeout(u.b.tab, 10*time.Second)
	defer cancel()
	if text != "" {
		if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
			u.b.fatalf("type %q: %v", text, err)
		}
	}
	if enter {
		key := input.DispatchKeyEventParams{Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			key.Type = typ
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, key); err != nil {
				u.b.fatalf("press Enter: %v", err)
			}
		}
	}
}

// In the browser: alice opens the terminal from the device page, logs in,
// the new host key is shown as trusted, a command runs and its output is
// on the screen; her stream is listed and audited via web-ssh; when her
// access is revoked her terminal closes. A changed host key is refused
// with both fingerprints and nothing sent, until root resets it on the
// device page.
func TestWebSSHInTheBrowser(t *testing.T) {
	u := newWebUI(t, server.Config{})
	sshd := sshTerminalSetup(t, u)

	u.signIn("alice", "alice-pass")
	u.open("/devices/pump-17")
	if !u.has(`a[href="/devices/pump-17/ssh"]`) {
		t.Fatalf("no terminal button on the device page:\n%s", u.text())
	}
	if u.has(`form[action$="/ssh-host-key/reset"]`) {
		t.Error("alice (no admin) sees the host key reset")
	}
	u.click(`a[href="/devices/pump-17/ssh"]`, `#ssh-login`, false)
	u.sshLogin("pi", "raspberry")
	u.sshState("ready")
	hostKey := u.textOf(`#ssh-hostkey`)
	fp := regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+`).FindString(hostKey)
	if !strings.HasPrefix(hostKey, "New host key, trusted: ssh-ed25519 SHA256:") || fp == "" {
		t.Errorf("host key line %q", hostKey)
	}
	if loc := u.b.location(); strings.Contains(loc, "raspberry") || strings.Contains(loc, "?") {
		t.Errorf("the login went into the URL: %s", loc)
	}
	if v := run(u.b, "read the password field", chromedp.Evaluate[string](`document.getElementById("ssh-password").value`)); v != "" {
		t.Errorf("the password stays in the page: %q", v)
	}
	u.typeInTerminal("echo hello-$RANDOM", true)
	hello := regexp.MustCompile(`hello-\d+`)
	deadline := time.Now().Add(20 * time.Second)
	for !hello.MatchString(u.terminalText()) {
		if time.Now().After(deadline) {
			t.Fatalf("no hello-<digits> on the terminal:\n%s", u.terminalText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	u.typeInTerminal("uname -s; echo \"ü → ✓\"", true)
	waitFor(t, func() bool { return strings.Contains(u.terminalText(), "ü → ✓") })
	u.b.step(10*time.Second, "picture size", chromedp.EmulateViewport(1000, 640))
	u.shot("ssh")
	u.b.step(10*time.Second, "desktop viewport", chromedp.EmulateViewport(1280, 900))
	streams := openStreams(t, u.stack)
	if len(streams) != 1 || streams[0].Via != "web-ssh" || streams[0].User != "alice" || streams[0].Port != sshd.port {
		t.Errorf("streams %+v", streams)
	}

	// The tab goes: the stream ends and is audited, via web-ssh.
	u.open("/devices/pump-17")
	waitFor(t, func() bool { return len(openStreams(t, u.stack)) == 0 })
	waitFor(t, func() bool { return webSSHStreamAudited(t, u, "alice", "web-ssh") })

	// Revoked while the terminal is open: it closes and says why.
	u.open("/devices/pump-17/ssh")
	u.sshLogin("pi", "raspberry")
	u.sshState("ready")
	if got := u.textOf(`#ssh-hostkey`); !strings.HasPrefix(got, "Host key as before:") || !strings.Contains(got, fp) {
		t.Errorf("second session's host key line %q", got)
	}
	u.admin("user", "set", "alice", "--no-groups")
	u.sshState("closed")
	if got := u.textOf(`#ssh-status`); !strings.Contains(got, "revoked") {
		t.Errorf("status after revocation %q", got)
	}
	waitFor(t, func() bool { return webSSHStreamAudited(t, u, "alice", "web-ssh: closed: access revoked") })

	// The device's key changes: refused, both fingerprints shown, no
	// password sent; root resets it on the device page and logs in.
	sshd.newKey()
	passwordsBefore, _ := sshd.counts()
	u.b.step(20*time.Second, "sign out", chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
	u.signIn("root", "root-pass")
	u.b.step(20*time.Second, "signed in", chromedp.WaitVisible(chromedp.CSS(`form.signout`)))
	u.open("/devices/pump-17/ssh")
	u.sshLogin("pi", "raspberry")
	u.sshState("hostkey-changed")
	warning := u.textOf(`#ssh-error`)
	shown := regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+`).FindAllString(warning, -1)
	if len(shown) != 2 || shown[0] != fp || shown[1] == fp || !strings.Contains(warning, "administrator can reset") {
		t.Errorf("warning %q, want the kept key %s and the new one", warning, fp)
	}
	u.shot("ssh-hostkey-changed")
	if n, _ := sshd.counts(); n != passwordsBefore {
		t.Errorf("%d password attempts reached the device with a changed host key", n-passwordsBefore)
	}
	u.open("/devices/pump-17")
	if got := u.textOf(`#host-key`); got != fp {
		t.Errorf("device page's host key %q, want %s", got, fp)
	}
	u.click(`form[action="/devices/pump-17/ssh-host-key/reset"] button`, `p.notice`, true)
	if u.has(`#host-key`) {
		t.Error("the device page still shows a host key after the reset")
	}
	u.open("/devices/pump-17/ssh")
	u.sshLogin("pi", "raspberry")
	u.sshState("ready")
	if got := u.textOf(`#ssh-hostkey`); !strings.HasPrefix(got, "New host key, trusted:") || strings.Contains(got, fp) {
		t.Errorf("host key line after the reset %q", got)
	}
	u.typeInTerminal("exit", true)
	u.sshState("closed")
	if d := os.Getenv("REFLECTOR_SCREENSHOTS"); d != "" {
		// docs/web-ssh.png is the first session's terminal.
		if png, err := os.ReadFile(filepath.Join(u.shots, "ssh.png")); err == nil {
			os.WriteFile(filepath.Join(d, "web-ssh.png"), png, 0o644)
		}
	}
}

// openStreams lists pump-17's open streams.
func openStreams(t *testing.T, s *stack) []proxy.Stream {
	t.Helper()
	ss, err := s.srv.Ops().DeviceStreams(context.Background(), ops.Local(), "pump-17")
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// webSSHStreamAudited reports whether the audit log has a stream of user
// to pump-17 with reason.
func webSSHStreamAudited(t *testing.T, u *webUI, user, reason string) bool {
	t.Helper()
	es, err := u.srv.Store().AuditEvents(store.AuditFilter{Device: "pump-17", Kind: store.AuditStream})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.User == user && e.Reason == reason {
			return true
		}
	}
	return false
}

// sshSocket dials the terminal's WebSocket on the admin host with a
// session cookie of user and the given Origin ("" for none), and returns
// the handshake's status.
func sshSocket(t *testing.T, s *stack, user, origin string) int {
	t.Helper()
	tok, _, err := s.srv.Store().CreateSession(user, "")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	addr := s.srv.Addr().String()
	d := websocket.Dialer{
		TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost"},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		HandshakeTimeout: 10 * time.Second,
	}
	h := http.Header{"Cookie": {admin.SessionCookie + "=" + tok}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ws, resp, err := d.Dial("wss://localhost:"+port+"/devices/pump-17/ssh/websocket", h)
	if ws != nil {
		ws.Close()
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A page of a device host (the same site as the admin host, so the
// browser sends the session cookie) must not open a shell on another
// device with the user's cookie: any Origin but exactly the admin host's
// is 403 before any stream.
func TestWebSSHRefusesForeignOriginsBeforeAnyStream(t *testing.T) {
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	secret := s.addDevice(store.Device{ID: "pump-17", Groups: []string{"plant-a"}})
	sshd := newDeviceSSHD(t)
	s.startAgent(agent.Config{DeviceID: "pump-17", Secret: secret, Ports: []uint16{sshd.port}, SSHPort: sshd.port})
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	for _, origin := range []string{
		"https://evil-device.localhost:" + port, // another device's page
		"https://pump-17.localhost:" + port,     // the device's own page
		"http://localhost:" + port,              // the admin host by plain http
		"https://localhost:1" + port,            // another port
		"https://localhost",                     // no port: 443
		"null",
		"", // none: not a browser, or one that hides it
	} {
		if code := sshSocket(t, s, "alice", origin); code != http.StatusForbidden {
			t.Errorf("Origin %q: %d, want 403", origin, code)
		}
	}
	if _, conns := sshd.counts(); conns != 0 {
		t.Fatalf("%d connections reached the device's SSH server", conns)
	}
	if n := len(openStreams(t, s)); n != 0 {
		t.Fatalf("%d streams open", n)
	}
	// The admin host's own page: upgraded, then closed by the test.
	if code := sshSocket(t, s, "alice", "https://localhost:"+port); code != http.StatusSwitchingProtocols {
		t.Fatalf("the admin host's origin: %d, want 101", code)
	}
}

// serve --no-web-ssh: the page says the terminal is off, the WebSocket is
// 404, the device page offers no terminal.
func TestWebSSHOffByTheOperator(t *testing.T) {
	s := newStackConfig(t, server.Config{NoWebSSH: true})
	s.addUser("alice", "alice-pass", false, "plant-a")
	secret := s.addDevice(store.Device{ID: "pump-17", Groups: []string{"plant-a"}})
	sshd := newDeviceSSHD(t)
	s.startAgent(agent.Config{DeviceID: "pump-17", Secret: secret, Ports: []uint16{sshd.port}, SSHPort: sshd.port})
	_, port, _ := net.SplitHostPort(s.srv.Addr().String())
	if code := sshSocket(t, s, "alice", "https://localhost:"+port); code != http.StatusNotFound {
		t.Errorf("WebSocket: %d, want 404", code)
	}
	tok, _, err := s.srv.Store().CreateSession("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://localhost:"+port+path, nil)
		req.AddCookie(&http.Cookie{Name: admin.SessionCookie, Value: tok})
		c := &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost"},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.srv.Addr().String())
			},
		}, Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/devices/pump-17/ssh"); code != http.StatusNotFound || !strings.Contains(body, "turned off by the operator") {
		t.Errorf("terminal page: %d\n%s", code, body)
	}
	if code, body := get("/devices/pump-17"); code != http.StatusOK || strings.Contains(body, "/devices/pump-17/ssh") || !strings.Contains(body, "ProxyCommand") {
		t.Errorf("device page: %d, with a terminal button or without SSH lines:\n%s", code, body)
	}
	if _, conns := sshd.counts(); conns != 0 {
		t.Errorf("%d connections reached the device's SSH server", conns)
	}
}
