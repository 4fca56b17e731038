package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

var tokenPattern = regexp.MustCompile(`rfl_[A-Za-z0-9_-]{32}`)

// createToken makes an API token with the admin command and returns it.
func (s *stack) createToken(args ...string) string {
	s.t.Helper()
	out := s.admin(append([]string{"token", "create"}, args...)...)
	tok := tokenPattern.FindString(out)
	if tok == "" {
		s.t.Fatalf("no token in %q", out)
	}
	return tok
}

// tokenID returns the id of the user's token with the given name.
func (s *stack) tokenID(user, name string) string {
	s.t.Helper()
	toks, err := s.srv.Store().Tokens(user)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, t := range toks {
		if t.Name == name {
			return t.ID
		}
	}
	s.t.Fatalf("no token %q for %s", name, user)
	return ""
}

// openEcho opens a CONNECT stream to the echo port with auth and checks it
// echoes.
func (f *fleet) openEcho(device, auth string) (net.Conn, *bufio.Reader) {
	f.t.Helper()
	conn := f.proxyConn()
	f.t.Cleanup(func() { conn.Close() })
	resp, br := f.connect(conn, auth, fmt.Sprintf("%s.localhost:%d", device, f.echo))
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("CONNECT %s: status %d", device, resp.StatusCode)
	}
	assertEcho(f.t, conn, br)
	return conn, br
}

func assertEcho(t testing.TB, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

// assertClosed waits until the stream is closed by the reflector.
func assertClosed(t testing.TB, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("stream still open 5 s after access was revoked")
	}
}

// connectStatus sends one CONNECT and returns the response.
func (f *fleet) connectStatus(auth, target string) *http.Response {
	f.t.Helper()
	conn := f.proxyConn()
	defer conn.Close()
	resp, _ := f.connect(conn, auth, target)
	resp.Body.Close()
	return resp
}

func (f *fleet) echoTarget(device string) string {
	return fmt.Sprintf("%s.localhost:%d", device, f.echo)
}

// auditEvents returns the audit events of a kind.
func (s *stack) auditEvents(kind string) []store.AuditEvent {
	s.t.Helper()
	evs, err := s.srv.Store().AuditEvents(store.AuditFilter{Kind: kind})
	if err != nil {
		s.t.Fatal(err)
	}
	return evs
}

func TestTokenIsTheProxyPassword(t *testing.T) {
	f := newFleet(t)
	tok := f.createToken("--user", "alice", "--name", "laptop")
	target := f.echoTarget("dev1")

	conn, br := f.openEcho("dev1", basic("alice", tok))
	conn.Close()
	if resp := f.connectStatus("Bearer "+tok, target); resp.StatusCode != http.StatusOK {
		t.Fatalf("Bearer token: status %d", resp.StatusCode)
	}
	_ = br

	wrong := tok[:len(tok)-1] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-1] != 'A']
	for name, auth := range map[string]string{
		"wrong token":         basic("alice", wrong),
		"another user's name": basic("bob", tok),
		"unknown user":        basic("mallory", tok),
	} {
		if resp := f.connectStatus(auth, target); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Errorf("%s: status %d, want 407", name, resp.StatusCode)
		}
	}

	// A device pattern narrows the token: dev1 does not match.
	narrow := f.createToken("--user", "alice", "--name", "pumps", "--devices", "pump-*")
	if resp := f.connectStatus(basic("alice", narrow), target); resp.StatusCode != http.StatusForbidden {
		t.Errorf("pattern mismatch: status %d, want 403", resp.StatusCode)
	}

	// An expired token is refused.
	short, _, err := f.srv.Store().CreateToken(store.Token{User: "alice", Name: "short", Expires: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if resp := f.connectStatus(basic("alice", short), target); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh short token: status %d", resp.StatusCode)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp := f.connectStatus(basic("alice", short), target); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("expired token: status %d, want 407", resp.StatusCode)
	}

	// The token's use is in the audit log, with the stream it opened.
	id := f.tokenID("alice", "laptop")
	var login, stream bool
	for _, ev := range f.auditEvents("") {
		switch {
		case ev.Kind == store.AuditLogin && ev.OK && ev.User == "alice" && ev.Token == id && ev.Client == "127.0.0.1":
			login = true
		case ev.Kind == store.AuditStream && ev.User == "alice" && ev.Token == id && ev.Device == "dev1" &&
			ev.Port == f.echo && ev.Client == "127.0.0.1" && ev.BytesUp == 4 && ev.BytesDown == 4 && ev.Duration > 0:
			stream = true
		}
	}
	if !login || !stream {
		t.Errorf("audit: login with token %v, stream with bytes %v", login, stream)
	}
}

func TestRevokedTokenClosesItsOpenStreams(t *testing.T) {
	f := newFleet(t)
	tok := f.createToken("--user", "alice", "--name", "laptop")
	other := f.createToken("--user", "alice", "--name", "desktop")
	conn, br := f.openEcho("dev1", basic("alice", tok))
	keep, keepBr := f.openEcho("dev1", basic("alice", other))

	id := f.tokenID("alice", "laptop")
	f.admin("token", "revoke", id)
	assertClosed(t, conn, br)
	assertEcho(t, keep, keepBr) // the user's other token is untouched
	if resp := f.connectStatus(basic("alice", tok), f.echoTarget("dev1")); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("revoked token: status %d, want 407", resp.StatusCode)
	}
	revoked := f.auditEvents(store.AuditTokenRevoke)
	if len(revoked) != 1 || revoked[0].Token != id || revoked[0].User != "alice" {
		t.Fatalf("audit token.revoke: %+v", revoked)
	}
	var closed bool
	for _, ev := range f.auditEvents(store.AuditStream) {
		if ev.Token == id && strings.Contains(ev.Reason, "revoked") {
			closed = true
		}
	}
	if !closed {
		t.Fatal("no stream event saying the stream was closed on revocation")
	}
}

func TestTOTPUserMustUseAToken(t *testing.T) {
	f := newFleet(t)
	st := f.srv.Store()
	url, err := st.BeginTOTP("alice", "Reflector test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := totp.GenerateCode(key.Secret(), time.Now())
	if err := st.ConfirmTOTP("alice", code); err != nil {
		t.Fatal(err)
	}
	target := f.echoTarget("dev1")
	if resp := f.connectStatus(basic("alice", "alice-pass"), target); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("password of a TOTP user: status %d, want 407", resp.StatusCode)
	}
	tok := f.createToken("--user", "alice", "--name", "laptop")
	if resp := f.connectStatus(basic("alice", tok), target); resp.StatusCode != http.StatusOK {
		t.Fatalf("token of a TOTP user: status %d", resp.StatusCode)
	}
	var reason string
	for _, ev := range f.auditEvents(store.AuditLogin) {
		if !ev.OK && ev.User == "alice" {
			reason = ev.Reason
		}
	}
	if !strings.Contains(reason, "TOTP") {
		t.Fatalf("audit reason for the refused password: %q", reason)
	}
}

// groupFleet adds device devb in group plant-b, online with the same echo
// and web ports as dev1.
func groupFleet(t *testing.T) *fleet {
	f := newFleet(t)
	secret := f.addDevice(store.Device{ID: "devb", Groups: []string{"plant-b"}})
	f.startAgent(agent.Config{DeviceID: "devb", Secret: secret, Ports: []uint16{f.echo, f.web}, HTTPPort: f.web})
	return f
}

func TestGroupsIsolateDevicesForConnectAndAbsoluteForm(t *testing.T) {
	f := groupFleet(t)
	for _, tc := range []struct {
		user, password, device string
		want                   int
	}{
		{"alice", "alice-pass", "dev1", 200},
		{"alice", "alice-pass", "devb", 403},
		{"bob", "bob-pass", "devb", 200},
		{"bob", "bob-pass", "dev1", 403},
		{"root", "root-pass", "devb", 200},
	} {
		name := tc.user + "→" + tc.device
		if resp := f.connectStatus(basic(tc.user, tc.password), f.echoTarget(tc.device)); resp.StatusCode != tc.want {
			t.Errorf("CONNECT %s: status %d, want %d", name, resp.StatusCode, tc.want)
		}
		resp, err := f.proxyClient(tc.user, tc.password).Get("http://" + tc.device + ".localhost/page")
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s: status %d, want %d", name, resp.StatusCode, tc.want)
		}
	}
}

func TestDeviceGroupChangeClosesStreamsOfUsersLeftOutside(t *testing.T) {
	f := groupFleet(t)
	aliceConn, aliceBr := f.openEcho("dev1", basic("alice", "alice-pass"))
	rootConn, rootBr := f.openEcho("dev1", basic("root", "root-pass"))
	f.admin("device", "set", "dev1", "--group", "plant-b")
	assertClosed(t, aliceConn, aliceBr)
	assertEcho(t, rootConn, rootBr) // admins reach every device
	if resp := f.connectStatus(basic("alice", "alice-pass"), f.echoTarget("dev1")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after the move: status %d, want 403", resp.StatusCode)
	}
	if resp := f.connectStatus(basic("bob", "bob-pass"), f.echoTarget("dev1")); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob after the move: status %d, want 200", resp.StatusCode)
	}
	if evs := f.auditEvents(store.AuditDeviceSet); len(evs) != 1 || evs[0].Device != "dev1" {
		t.Fatalf("audit device.set: %+v", evs)
	}
}

func TestRotatedSecretDropsTheAgentAndRefusesTheOldSecret(t *testing.T) {
	f := newFleet(t)
	f.admin("device", "rotate-secret", "dev1")
	waitFor(t, func() bool { _, ok := f.srv.Hub().Status("dev1"); return !ok })
	// The agent retries with its old secret and is refused.
	waitFor(t, func() bool {
		for _, ev := range f.auditEvents(store.AuditAgent) {
			if !ev.OK && ev.Device == "dev1" {
				return true
			}
		}
		return false
	})
	if _, ok := f.srv.Hub().Status("dev1"); ok {
		t.Fatal("agent with the old secret is connected")
	}
	if evs := f.auditEvents(store.AuditRotate); len(evs) != 1 || evs[0].Device != "dev1" || !evs[0].OK {
		t.Fatalf("audit device.rotate: %+v", evs)
	}
}

func TestDisabledDeviceIsDroppedAndComesBackWhenEnabled(t *testing.T) {
	f := newFleet(t)
	f.admin("device", "disable", "dev1")
	waitFor(t, func() bool { _, ok := f.srv.Hub().Status("dev1"); return !ok })
	time.Sleep(300 * time.Millisecond) // several agent retries
	if _, ok := f.srv.Hub().Status("dev1"); ok {
		t.Fatal("disabled device connected again")
	}
	f.admin("device", "enable", "dev1")
	waitFor(t, func() bool { _, ok := f.srv.Hub().Status("dev1"); return ok })
	kinds := map[string]bool{}
	for _, ev := range f.auditEvents("device.") {
		kinds[ev.Kind] = true
	}
	if !kinds[store.AuditDisable] || !kinds[store.AuditEnable] {
		t.Fatalf("audit kinds %v", kinds)
	}
}

func TestFailedLoginsAreThrottledButAValidTokenIsNot(t *testing.T) {
	f := newFleet(t)
	tok := f.createToken("--user", "alice", "--name", "laptop")
	target := f.echoTarget("dev1")
	for i := range 5 {
		if resp := f.connectStatus(basic("alice", "wrong"), target); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("failure %d: status %d, want 407", i+1, resp.StatusCode)
		}
	}
	resp := f.connectStatus(basic("alice", "alice-pass"), target)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures the right password got %d, want 429 unchecked", resp.StatusCode)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > 3600 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	// The address is locked out too: another user's password waits as well.
	if resp := f.connectStatus(basic("bob", "bob-pass"), f.echoTarget("dev1")); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same address, other user: status %d, want 429", resp.StatusCode)
	}
	// A valid token is never locked out by the failures.
	f.openEcho("dev1", basic("alice", tok))
	// Absolute-form requests are throttled the same way.
	get, err := f.proxyClient("alice", "alice-pass").Get("http://dev1.localhost/")
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusTooManyRequests || get.Header.Get("Retry-After") == "" {
		t.Fatalf("absolute-form while locked out: %d, Retry-After %q", get.StatusCode, get.Header.Get("Retry-After"))
	}
	if evs := f.auditEvents(store.AuditLockout); len(evs) == 0 || evs[0].Client != "127.0.0.1" {
		t.Fatalf("audit auth.locked: %+v", evs)
	}
	var failed int
	for _, ev := range f.auditEvents(store.AuditLogin) {
		if !ev.OK && ev.User == "alice" && ev.Client == "127.0.0.1" && ev.Reason != "" {
			failed++
		}
	}
	if failed != 5 {
		t.Fatalf("audit has %d failed logins for alice, want 5 (locked-out attempts are not checked)", failed)
	}
}

func TestWrongAgentSecretsAreThrottledButRightOnesPass(t *testing.T) {
	f := newFleet(t)
	f.addDevice(store.Device{ID: "dev3", Groups: []string{"plant-a"}})
	secret := f.addDevice(store.Device{ID: "dev4", Groups: []string{"plant-a"}})
	statuses := make([]int, 6)
	for i := range statuses {
		statuses[i] = f.agentUpgradeStatus("dev3", "wrong-secret")
	}
	if want := []int{401, 401, 401, 401, 401, 429}; fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	// Another device's right secret still connects from the locked-out
	// address (a fleet behind one NAT address); dev3 itself is locked.
	f.startAgent(agent.Config{DeviceID: "dev4", Secret: secret, Ports: []uint16{f.echo}})
}

// agentUpgradeStatus sends an agent's upgrade request with the given
// credentials and returns the status.
func (s *stack) agentUpgradeStatus(device, secret string) int {
	s.t.Helper()
	conn := s.proxyConn()
	defer conn.Close()
	fmt.Fprintf(conn, "GET /tunnel/v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: reflector.v1\r\n"+
		"X-Reflector-Ports: 22\r\nAuthorization: %s\r\n\r\n", basic(device, secret))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode
}

func TestMalformedProxyCredentialsGet407Or400(t *testing.T) {
	f := newFleet(t)
	long := strings.Repeat("a", 5000)
	for name, auth := range map[string]string{
		"not base64":          "Basic !!!",
		"empty basic":         "Basic ",
		"no colon":            "Basic " + b64("alice"),
		"empty user":          "Basic " + b64(":pw"),
		"over-long user":      basic(long, "x"),
		"over-long password":  basic("alice", long),
		"binary":              "Basic " + b64("\x00\xff\xfe:\x01\x02"),
		"empty bearer":        "Bearer",
		"garbage bearer":      "Bearer \x7f\x01rfl_",
		"token-shaped junk":   basic("alice", "rfl_"+strings.Repeat("!", 32)),
		"unknown scheme":      "Digest username=alice",
		"binary scheme":       "\xff\xfe \x00",
		"over-long header":    "Basic " + strings.Repeat("QUFB", 4000),
		"user name with \\n?": "Basic " + b64("al\nice:pw"),
	} {
		t.Run(name, func(t *testing.T) {
			conn := f.proxyConn()
			defer conn.Close()
			fmt.Fprintf(conn, "CONNECT dev1.localhost:%d HTTP/1.1\r\nHost: dev1.localhost\r\nProxy-Authorization: %s\r\n\r\n", f.echo, auth)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusProxyAuthRequired && resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 407 or 400", resp.StatusCode)
			}
		})
	}
	// The reflector is still fine.
	f.openEcho("dev1", basic("alice", "alice-pass"))
}

func TestAuditCommandShowsAccessAndAdminChanges(t *testing.T) {
	f := newFleet(t)
	tok := f.createToken("--user", "alice", "--name", "laptop")
	conn, _ := f.openEcho("dev1", basic("alice", tok))
	conn.Close()
	f.admin("token", "revoke", f.tokenID("alice", "laptop"))
	var streams []store.AuditEvent
	waitFor(t, func() bool {
		out := f.admin("audit", "--since", "1h", "--device", "dev1", "--json")
		streams = streams[:0]
		for line := range strings.Lines(out) {
			var ev store.AuditEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("audit --json line %q: %v", line, err)
			}
			if ev.Device != "dev1" {
				t.Fatalf("--device dev1 returned %+v", ev)
			}
			if ev.Kind == store.AuditStream {
				streams = append(streams, ev)
			}
		}
		return len(streams) == 1
	})
	if ev := streams[0]; ev.User != "alice" || ev.Port != f.echo || ev.BytesUp != 4 || ev.BytesDown != 4 {
		t.Fatalf("stream event %+v", ev)
	}
	out := f.admin("audit", "--user", "alice")
	for _, kind := range []string{store.AuditTokenCreate, store.AuditTokenRevoke, store.AuditLogin, store.AuditStream} {
		if !strings.Contains(out, kind) {
			t.Errorf("audit --user alice lacks %s:\n%s", kind, out)
		}
	}
}

func TestEnrollmentKeysAndGroupQuotas(t *testing.T) {
	s := newStack(t)
	s.admin("group", "add", "field", "--max-devices", "2")
	st := s.srv.Store()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost"}}}
	url := "https://" + s.srv.Addr().String()
	enrollDevice := func(key, device string) error {
		_, err := enroll.Request(context.Background(), client, url, key, device)
		return err
	}
	key, _, err := st.CreateEnrollKey(store.EnrollKey{Group: "field", Max: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		if err := enrollDevice(key, id); err != nil {
			t.Fatalf("enrol %s: %v", id, err)
		}
	}
	// The group is full: the key has uses left, the quota says no.
	var refused *enroll.RefusedError
	if err := enrollDevice(key, "a3"); !errors.As(err, &refused) || refused.Status != http.StatusForbidden {
		t.Fatalf("enrol beyond the group's quota: %v, want 403", err)
	}
	// device add is held to the same quota.
	if _, errOut, code := s.adminCode("", "device", "add", "a4", "--group", "field"); code == 0 || !strings.Contains(errOut, "quota") {
		t.Fatalf("device add beyond the quota: exit %d: %s", code, errOut)
	}
	s.admin("group", "set", "field", "--max-devices", "0")
	if err := enrollDevice(key, "a3"); err != nil {
		t.Fatalf("enrol after lifting the quota: %v", err)
	}

	expiring, _, err := st.CreateEnrollKey(store.EnrollKey{Group: "field", Expires: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := enrollDevice(expiring, "b1"); !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
		t.Fatalf("expired key: %v, want 401", err)
	}
	if err := enrollDevice("rfe_"+strings.Repeat("A", 32), "b2"); !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v, want 401", err)
	}
	if _, err := st.Device("b1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused enrolment left a device: %v", err)
	}
	reasons := map[string]string{}
	for _, ev := range s.auditEvents(store.AuditEnroll) {
		if !ev.OK {
			reasons[ev.Device] = ev.Reason
		}
	}
	if !strings.Contains(reasons["a3"], "quota") || !strings.Contains(reasons["b1"], "expired") || reasons["b2"] == "" {
		t.Fatalf("audit reasons for refused enrolments: %q", reasons)
	}
}

// TestRevokedTokenClosesItsAbsoluteFormWebSocket (issue 15, item 1): a
// WebSocket opened with GET http://device/ws through the proxy ends when
// its token is revoked, like CONNECT streams and device-host WebSockets.
func TestRevokedTokenClosesItsAbsoluteFormWebSocket(t *testing.T) {
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	web := webServer(t, wsEcho)
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{web}, HTTPPort: web})
	tok := s.createToken("--user", "alice", "--name", "laptop")

	conn := s.proxyConn()
	defer conn.Close()
	fmt.Fprintf(conn, "GET http://dev1.localhost/ws HTTP/1.1\r\nHost: dev1.localhost\r\nProxy-Authorization: %s\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		basic("alice", tok))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("absolute-form upgrade: %v %v", resp, err)
	}
	// One masked text frame "hi" (RFC 6455 §5.2), and its unmasked echo.
	conn.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
	echo := make([]byte, 4)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo[2:]) != "hi" {
		t.Fatalf("echo: %q %v", echo, err)
	}

	s.admin("token", "revoke", s.tokenID("alice", "laptop"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("WebSocket still open 5 s after the token was revoked: %v", err)
	}
	waitFor(t, func() bool {
		for _, ev := range s.auditEvents(store.AuditRequest) {
			if strings.HasPrefix(ev.Reason, "GET /ws 101") && strings.Contains(ev.Reason, "revoked") && ev.BytesUp > 0 {
				return true
			}
		}
		return false
	})
}
