package webssh

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
)

// rig is a Server in front of a testSSHD, over real sockets: the page's
// side is a gorilla WebSocket client, the device's side the SSH server on
// 127.0.0.1, host keys in a real store.
type rig struct {
	t     *testing.T
	sshd  *testSSHD
	st    *store.Store
	srv   *Server
	url   string
	opens int

	mu    sync.Mutex
	audit []store.AuditEvent
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.AddDevice(store.Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, sshd: newTestSSHD(t), st: st}
	r.srv, err = New(Config{
		Open: func(ctx context.Context, _ store.Credential, _ netip.Addr, device string, port uint16) (net.Conn, error) {
			r.mu.Lock()
			r.opens++
			r.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		},
		HostKeys: st,
		Port:     func(string) uint16 { return r.sshd.port },
		Audit: func(ev store.AuditEvent) {
			r.mu.Lock()
			r.audit = append(r.audit, ev)
			r.mu.Unlock()
		},
		LoginTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.srv.Serve(w, req, store.Credential{User: store.User{Name: "alice"}}, netip.MustParseAddr("192.0.2.9"), "pump-17")
	}))
	t.Cleanup(func() {
		hs.Close()
		r.srv.Close()
	})
	r.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return r
}

// page is the page's end of one session.
type page struct {
	t  *testing.T
	ws *websocket.Conn
}

func (r *rig) open() *page {
	r.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(r.url, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ws.Close() })
	return &page{t: r.t, ws: ws}
}

func (p *page) sendJSON(v any) {
	p.t.Helper()
	if err := p.ws.WriteJSON(v); err != nil {
		p.t.Fatal(err)
	}
}

func (p *page) sendText(s string) {
	p.t.Helper()
	if err := p.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next control message, adding terminal bytes before it
// to out (if not nil).
func (p *page) next(out *strings.Builder) reflectorMessage {
	p.t.Helper()
	for {
		p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		mt, data, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("read: %v (terminal so far: %q)", err, out)
		}
		if mt == websocket.BinaryMessage {
			if out != nil {
				out.Write(data)
			}
			continue
		}
		var m reflectorMessage
		if err := json.Unmarshal(data, &m); err != nil {
			p.t.Fatalf("control message %q: %v", data, err)
		}
		return m
	}
}

// expect reads control messages until one of type typ, and fails on an
// error message.
func (p *page) expect(typ string, out *strings.Builder) reflectorMessage {
	p.t.Helper()
	for {
		m := p.next(out)
		if m.Type == typ {
			return m
		}
		if m.Type == typeError || m.Type == typeExit {
			p.t.Fatalf("want %q, got %+v", typ, m)
		}
	}
}

// readUntil reads terminal bytes until they match re.
func (p *page) readUntil(re *regexp.Regexp) string {
	p.t.Helper()
	var out strings.Builder
	for !re.MatchString(out.String()) {
		p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		mt, data, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("read: %v; terminal so far %q, want %s", err, out.String(), re)
		}
		if mt == websocket.BinaryMessage {
			out.Write(data)
		}
	}
	return out.String()
}

func (p *page) closed() {
	p.t.Helper()
	p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := p.ws.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				p.t.Fatal("the WebSocket stayed open")
			}
			return
		}
	}
}

func auth(user, password string) map[string]any {
	return map[string]any{"type": "auth", "user": user, "password": password, "cols": 100, "rows": 30}
}

// A session from login to exit: the host key trusted on first use (and
// audited), a pty of the page's size, a resize, bytes both ways, the
// shell's exit status.
func TestSessionFromLoginToExit(t *testing.T) {
	r := newRig(t)
	p := r.open()
	p.sendJSON(auth("pi", "raspberry"))
	hk := p.expect(typeHostKey, nil)
	if hk.Status != "new" || hk.KeyType != "ssh-ed25519" || !strings.HasPrefix(hk.Fingerprint, "SHA256:") {
		t.Fatalf("host key message %+v", hk)
	}
	p.expect(typeReady, nil)
	p.sendJSON(map[string]any{"type": "resize", "cols": 120, "rows": 40})
	if err := p.ws.WriteMessage(websocket.BinaryMessage, []byte("echo hello-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	p.readUntil(regexp.MustCompile(`hello-42`))
	p.ws.WriteMessage(websocket.BinaryMessage, []byte("exit 3\n"))
	ex := p.expect(typeExit, nil)
	if ex.ExitStatus == nil || *ex.ExitStatus != 3 {
		t.Errorf("exit message %+v, want status 3", ex)
	}
	p.closed()
	r.sshd.mu.Lock()
	ptys, resizes := r.sshd.ptys, r.sshd.resizes
	r.sshd.mu.Unlock()
	if len(ptys) != 1 || ptys[0] != "xterm-256color 100x30" || len(resizes) != 1 || resizes[0] != "120x40" {
		t.Errorf("pty requests %q, window changes %q", ptys, resizes)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.audit) != 1 || r.audit[0].Kind != store.AuditHostKey || !r.audit[0].OK ||
		r.audit[0].Reason != "trusted on first use: ssh-ed25519 "+hk.Fingerprint || r.audit[0].User != "alice" {
		t.Errorf("audit %+v", r.audit)
	}
}

// The second session sees the kept key as known; after the device's key
// changes, the session is refused with both fingerprints before any
// password is sent; after a reset the new key is trusted.
func TestChangedHostKeyIsRefusedBeforeTheLogin(t *testing.T) {
	r := newRig(t)
	p := r.open()
	p.sendJSON(auth("pi", "raspberry"))
	first := p.expect(typeHostKey, nil)
	p.expect(typeReady, nil)
	p.ws.Close()

	p = r.open()
	p.sendJSON(auth("pi", "raspberry"))
	if m := p.expect(typeHostKey, nil); m.Status != "known" || m.Fingerprint != first.Fingerprint {
		t.Fatalf("second session's host key %+v", m)
	}
	p.expect(typeReady, nil)
	p.ws.Close()

	r.sshd.newKey()
	r.sshd.mu.Lock()
	before := r.sshd.passwords
	r.sshd.mu.Unlock()
	p = r.open()
	p.sendJSON(auth("pi", "raspberry"))
	m := p.next(nil)
	if m.Type != typeError || m.Code != codeHostKeyChanged || m.Expected != first.Fingerprint ||
		m.Fingerprint == first.Fingerprint || !strings.HasPrefix(m.Fingerprint, "SHA256:") ||
		!strings.Contains(m.Message, m.Expected) || !strings.Contains(m.Message, m.Fingerprint) || !strings.Contains(m.Message, "administrator") {
		t.Fatalf("changed key: %+v", m)
	}
	p.closed()
	r.sshd.mu.Lock()
	after := r.sshd.passwords
	r.sshd.mu.Unlock()
	if after != before {
		t.Errorf("%d password attempts reached the server with the changed key", after-before)
	}

	if _, err := r.st.ResetHostKey("pump-17"); err != nil {
		t.Fatal(err)
	}
	p = r.open()
	p.sendJSON(auth("pi", "raspberry"))
	if m := p.expect(typeHostKey, nil); m.Status != "new" || m.Fingerprint == first.Fingerprint {
		t.Fatalf("after the reset: %+v", m)
	}
	p.expect(typeReady, nil)
}

// Keyboard-interactive questions go to the page and its answers back.
func TestKeyboardInteractivePromptsAreAnsweredInThePage(t *testing.T) {
	r := newRig(t)
	p := r.open()
	p.sendJSON(auth("otp", "raspberry"))
	m := p.expect(typePrompt, nil)
	if len(m.Prompts) != 1 || m.Prompts[0].Text != "Verification code: " || m.Prompts[0].Echo || m.Instruction != "Second factor" {
		t.Fatalf("prompt %+v", m)
	}
	p.sendJSON(map[string]any{"type": "answers", "answers": []string{"123456"}})
	p.expect(typeReady, nil)
}

// A wrong password is an "auth" error.
func TestWrongPasswordIsAnAuthError(t *testing.T) {
	r := newRig(t)
	p := r.open()
	p.sendJSON(auth("pi", "wrong"))
	m := p.next(nil)
	for m.Type == typeHostKey {
		m = p.next(nil)
	}
	if m.Type != typeError || m.Code != codeAuth || !strings.Contains(m.Message, `"pi"`) {
		t.Fatalf("wrong password: %+v", m)
	}
	p.closed()
}

// Bad messages from the network get a protocol error that says what was
// wrong, and the connection closes; before "auth", nothing is dialled.
func TestBadMessagesFromThePageAreProtocolErrors(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name, send, want string
		binary           bool
	}{
		{"binary first", "ls\n", `the first message must be "auth"`, true},
		{"not JSON", "hello", "not a control message", false},
		{"two values", `{"type":"auth","user":"pi"} {}`, "more than one JSON value", false},
		{"no type", `{"user":"pi"}`, `without "type"`, false},
		{"unknown type", `{"type":"exec","user":"pi"}`, `unknown message type "exec"`, false},
		{"unknown field", `{"type":"auth","user":"pi","command":"rm"}`, "unknown field", false},
		{"resize first", `{"type":"resize","cols":80,"rows":24}`, `the first message must be "auth"`, false},
		{"no user", `{"type":"auth","password":"x","cols":80,"rows":24}`, "a user name", false},
		{"control character in user", `{"type":"auth","user":"pi\n","cols":80,"rows":24}`, "a user name", false},
		{"huge terminal", `{"type":"auth","user":"pi","cols":5000,"rows":24}`, "cols and rows must be 1-1000", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := r.open()
			mt := websocket.TextMessage
			if c.binary {
				mt = websocket.BinaryMessage
			}
			if err := p.ws.WriteMessage(mt, []byte(c.send)); err != nil {
				t.Fatal(err)
			}
			m := p.next(nil)
			if m.Type != typeError || m.Code != codeProtocol || !strings.Contains(m.Message, c.want) {
				t.Fatalf("got %+v, want a protocol error saying %q", m, c.want)
			}
			p.closed()
		})
	}
	if r.opens != 0 {
		t.Errorf("%d streams opened for bad first messages", r.opens)
	}

	// After the login too: the session ends with a protocol error.
	p := r.open()
	p.sendJSON(auth("pi", "raspberry"))
	p.expect(typeReady, nil)
	p.sendText(`{"type":"auth","user":"pi","cols":80,"rows":24}`)
	if m := p.expect(typeError, nil); m.Code != codeProtocol || !strings.Contains(m.Message, "a second time") {
		t.Fatalf("auth twice: %+v", m)
	}
	p.closed()
}

// The stream ending under the session (access revoked: the proxy closes
// it) ends the session with an exit message that says so.
func TestStreamEndingEndsTheSession(t *testing.T) {
	r := newRig(t)
	var streams []net.Conn
	var mu sync.Mutex
	open := r.srv.cfg.Open
	r.srv.cfg.Open = func(ctx context.Context, cred store.Credential, client netip.Addr, device string, port uint16) (net.Conn, error) {
		c, err := open(ctx, cred, client, device, port)
		mu.Lock()
		streams = append(streams, c)
		mu.Unlock()
		return c, err
	}
	p := r.open()
	p.sendJSON(auth("pi", "raspberry"))
	p.expect(typeReady, nil)
	mu.Lock()
	streams[0].Close()
	mu.Unlock()
	m := p.expect(typeExit, nil)
	if m.ExitStatus != nil || !strings.Contains(m.Message, "revoked") {
		t.Fatalf("exit %+v", m)
	}
	p.closed()
}

func TestParsePageMessageFillsTheDefaultSize(t *testing.T) {
	m, err := parsePageMessage([]byte(`{"type":"auth","user":"pi"}`))
	if err != nil || m.Cols != defaultColumn || m.Rows != defaultRow {
		t.Fatalf("%+v %v", m, err)
	}
}

func FuzzParsePageMessage(f *testing.F) {
	f.Add([]byte(`{"type":"auth","user":"pi","password":"x","cols":80,"rows":24}`))
	f.Add([]byte(`{"type":"answers","answers":["1"]}`))
	f.Add([]byte(`{"type":"resize","cols":1,"rows":1000}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parsePageMessage(data)
		if err != nil {
			return
		}
		switch m.Type {
		case typeAuth, typeResize:
			if m.Cols < 1 || m.Cols > maxDimension || m.Rows < 1 || m.Rows > maxDimension {
				t.Fatalf("accepted size %dx%d", m.Cols, m.Rows)
			}
		case typeAnswers:
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
	})
}

// Close ends a session that has not logged in yet and one whose shell
// runs (which is told why), and waits for both.
func TestCloseEndsSessionsAndWaits(t *testing.T) {
	r := newRig(t)
	idle := r.open()
	running := r.open()
	running.sendJSON(auth("pi", "raspberry"))
	running.expect(typeReady, nil)
	closed := make(chan struct{})
	go func() { r.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s")
	}
	if m := running.expect(typeError, nil); m.Code != codeClosed {
		t.Errorf("running session told %+v", m)
	}
	idle.closed()
}
