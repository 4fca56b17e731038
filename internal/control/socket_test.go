package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// startServer opens the store in dir, listens on its control socket and
// serves it until the test ends. It returns the server's store, which stays
// open (and locked) for the whole test.
func startServer(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ln, err := Listen(dir, nil)
	if err != nil {
		s.Close()
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	env := testEnv{Store: s, Hub: tunnel.NewHub(nil), ReflectorURL: "https://server.example:8443", Fingerprint: testFingerprint}.env(t)
	go func() { served <- Serve(ctx, ln, env, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// mainCmd runs Main as `reflector <args>` would, with an offline URL that
// differs from the server's so tests can tell which path ran.
func mainCmd(t *testing.T, dir, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	offline := func() (string, string) { return "https://offline.example:8443", "" }
	code = Main(context.Background(), dir, args, strings.NewReader(stdin), &out, &errb, offline)
	return code, out.String(), errb.String()
}

func TestMainRunsCommandInsideRunningServer(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)

	// The server holds the bbolt lock: a direct open would fail with
	// ErrInUse, so success here means the command ran in the server.
	code, stdout, stderr := mainCmd(t, dir, "hunter2\nrest\n", "user", "add", "alice", "--admin", "--password-stdin")
	if code != 0 {
		t.Fatalf("user add: code %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "user alice added (admin)") {
		t.Errorf("stdout %q", stdout)
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "hunter2"); err != nil {
		t.Errorf("server's store: %v", err)
	}

	code, stdout, _ = mainCmd(t, dir, "", "device", "add", "pump-17", "--ports", "22")
	if code != 0 || !strings.Contains(stdout, "--reflector https://server.example:8443") || !strings.Contains(stdout, "--fingerprint "+testFingerprint) {
		t.Errorf("device add: code %d, want the server's URL and fingerprint:\n%s", code, stdout)
	}
	if _, err := s.Device("pump-17"); err != nil {
		t.Errorf("server's store: %v", err)
	}

	// Failures keep their code and stderr across the socket.
	code, stdout, stderr = mainCmd(t, dir, "", "user", "add", "alice")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "already exists") {
		t.Errorf("duplicate: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, _, stderr = mainCmd(t, dir, "", "user", "add")
	if code != 2 || !strings.Contains(stderr, "usage: reflector user add") {
		t.Errorf("usage: code %d stderr %q", code, stderr)
	}
}

func TestMainWithoutServerOpensStoreItself(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, stdout, stderr := mainCmd(t, dir, "", "device", "add", "pump-17")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "--reflector https://offline.example:8443 --device pump-17 --ports 80\n") {
		t.Errorf("want the offline URL and no fingerprint:\n%s", stdout)
	}
	// Main closed the store: it opens again, with the device in it.
	s, err := store.Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.Device("pump-17"); err != nil {
		t.Error(err)
	}
}

func TestMainFallsBackToStoreWhenSocketIsStale(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, as after a crash; nobody answers

	if code, _, stderr := mainCmd(t, dir, "", "user", "add", "bob"); code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if code, stdout, _ := mainCmd(t, dir, "", "user", "list"); code != 0 || !strings.Contains(stdout, "bob") {
		t.Errorf("user list: code %d:\n%s", code, stdout)
	}
}

func TestMainSaysServerRunsWhenStoreLockedAndSocketSilent(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir) // a reflector without a control socket
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _, stderr := mainCmd(t, dir, "", "user", "list")
	if code != 1 || !strings.Contains(stderr, "a reflector is running on this data directory but its control socket does not answer") {
		t.Errorf("code %d stderr %q", code, stderr)
	}
}

func TestMainReadsStdinOnlyWhenTheCommandNeedsIt(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	var out, errb bytes.Buffer
	code := Main(context.Background(), dir, []string{"user", "list"}, failingReader{t}, &out, &errb, nil)
	if code != 0 {
		t.Errorf("code %d: %s", code, errb.String())
	}
}

func TestMainUsageTouchesNoDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nonexistent")
	if code, _, stderr := mainCmd(t, dir, "", "help"); code != 2 || !strings.Contains(stderr, "usage:") {
		t.Errorf("code %d stderr %q", code, stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory created: %v", err)
	}
}

type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("stdin read by a command that needs none")
	return 0, io.EOF
}

func TestListenMakesSocketPrivateAndReplacesOnlyStaleOnes(t *testing.T) {
	dir := t.TempDir()
	ln, err := Listen(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want socket 0600", fi.Mode())
	}
	if _, err := Listen(dir, nil); err == nil {
		t.Error("second Listen succeeded while the first listener answers")
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	ln, err = Listen(dir, nil) // the stale file is replaced
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}

	if err := os.WriteFile(SocketPath(dir), []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(dir, nil); err == nil {
		t.Error("Listen replaced a regular file")
	}
}

// exchange sends raw bytes on a fresh connection and decodes the answer.
func exchange(t *testing.T, dir string, raw []byte) response {
	t.Helper()
	conn, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		// A too-large request is answered before it is read in full, so
		// write beside reading.
		conn.Write(raw)
		conn.(*net.UnixConn).CloseWrite()
	}()
	var resp response
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
	return resp
}

func TestServeAnswersMalformedRequestsAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	bad := map[string][]byte{
		"not json":       []byte("user list\n"),
		"trailing data":  []byte(`{"args":["user","list"]} {}` + "\n"),
		"wrong types":    []byte(`{"args":"user list"}` + "\n"),
		"bad base64":     []byte(`{"args":["user","list"],"stdin":"!!"}` + "\n"),
		"too large":      append(bytes.Repeat([]byte("x"), maxRequest+10), '\n'),
		"no newline eof": []byte(`{"args":`),
	}
	for name, raw := range bad {
		resp := exchange(t, dir, raw)
		if resp.Code != 1 || !strings.Contains(resp.Stderr, "bad control request") {
			t.Errorf("%s: %+v", name, resp)
		}
	}
	// A well-formed request without a newline before EOF is fine, and an
	// empty argument list is a usage answer, not a crash.
	if resp := exchange(t, dir, []byte(`{"args":[]}`)); resp.Code != 2 {
		t.Errorf("empty args: %+v", resp)
	}
	if resp := exchange(t, dir, []byte(`null`+"\n")); resp.Code != 2 {
		t.Errorf("null: %+v", resp)
	}
	if code, _, stderr := mainCmd(t, dir, "", "user", "list"); code != 0 {
		t.Errorf("after bad requests: code %d: %s", code, stderr)
	}
}

func TestServeReturnsWhenListenerCloses(t *testing.T) {
	ln, err := Listen(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- Serve(context.Background(), ln, Env{}, nil) }()
	ln.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after its listener closed")
	}
}

func TestServeConnDropsSilentClientAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		done := make(chan struct{})
		start := time.Now()
		go func() {
			serveConn(context.Background(), server, Env{}, slog.New(slog.DiscardHandler))
			close(done)
		}()
		<-done // the client never writes
		if d := time.Since(start); d != connTimeout {
			t.Errorf("connection dropped after %v, want %v", d, connTimeout)
		}
	})
}

func TestServeConnStopsWaitingForRequestOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() {
			serveConn(ctx, server, Env{}, slog.New(slog.DiscardHandler))
			close(done)
		}()
		time.Sleep(time.Second)
		cancel()
		<-done
		if d := time.Since(start); d != time.Second {
			t.Errorf("connection dropped after %v, want 1s", d)
		}
	})
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(`{"args":["user","add","alice","--password-stdin"],"stdin":"cHcK"}` + "\n"))
	f.Add([]byte(`{"args":["device","list"]}`))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"args":[null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decodes must dispatch without a panic; with no store
		// every known command fails cleanly.
		code := Run(context.Background(), Env{}, req.Args, bytes.NewReader(req.Stdin), io.Discard, io.Discard)
		if code < 0 || code > 2 {
			t.Errorf("code %d", code)
		}
	})
}

// TestMainTOTPEnableIsADialogueWithAndWithoutServer drives Main as a person
// at a terminal would: read the URL, type the code. Over the socket the
// enrolment takes two requests with the prompt between them; without a
// server Main takes the same two steps on the store it opened.
func TestMainTOTPEnableIsADialogueWithAndWithoutServer(t *testing.T) {
	for _, withServer := range []bool{true, false} {
		name, host := "no server", "offline.example"
		if withServer {
			name, host = "server", "server.example"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var s *store.Store
			if withServer {
				s = startServer(t, dir)
			}
			if code, _, stderr := mainCmd(t, dir, "", "user", "add", "alice"); code != 0 {
				t.Fatalf("user add: %d %s", code, stderr)
			}
			args := []string{"user", "totp", "enable", "alice"}

			code, _, stderr, _ := totpDialogue(t, mainRunner(dir, args...), wrongCode(t))
			if code != 1 || !strings.Contains(stderr, "reflector: enable TOTP for alice: wrong code; TOTP stays off") {
				t.Errorf("wrong code: code %d stderr %q", code, stderr)
			}

			code, stdout, stderr, otpURL := totpDialogue(t, mainRunner(dir, args...), rightCode(t))
			if code != 0 {
				t.Fatalf("right code: code %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if strings.Count(stdout, "TOTP enrolment for alice started") != 1 || !strings.HasSuffix(stdout, "TOTP enabled for alice\n") {
				t.Errorf("stdout:\n%s", stdout)
			}
			if !strings.Contains(stderr, codePrompt) {
				t.Errorf("no prompt on stderr: %q", stderr)
			}
			if !strings.Contains(otpURL, url.PathEscape("Reflector ("+host+")")) {
				t.Errorf("URL %s: want the issuer with %s", otpURL, host)
			}
			secret := secretOf(t, otpURL)

			if withServer && !totpOn(t, s, "alice") {
				t.Error("TOTP off in the server's store")
			}
			if _, stdout, _ := mainCmd(t, dir, "", "user", "list"); !regexp.MustCompile(`(?m)^alice .* yes `).MatchString(stdout) {
				t.Errorf("user list:\n%s", stdout)
			}

			// disable asks here too, and sends the code along.
			next := codeAt(t, secret, time.Now().Add(30*time.Second))
			code, stdout, stderr = mainCmd(t, dir, next+"\n", "user", "totp", "disable", "alice")
			if code != 0 || stdout != "TOTP disabled for alice\n" || !strings.Contains(stderr, codePrompt) {
				t.Errorf("disable: code %d stdout %q stderr %q", code, stdout, stderr)
			}
			code, _, stderr = mainCmd(t, dir, "\n", "user", "totp", "disable", "alice")
			if code != 1 || !strings.Contains(stderr, "no code entered") {
				t.Errorf("disable without a code: code %d stderr %q", code, stderr)
			}
		})
	}
}

func TestMainTOTPEnableWithFlagsIsOneRequestThatReadsNoStdin(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	if code, _, stderr := mainCmd(t, dir, "", "user", "add", "alice"); code != 0 {
		t.Fatal(stderr)
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), dir, []string{"user", "totp", "enable", "alice", "--begin"}, failingReader{t}, &out, &errb, nil)
	if code != 0 || strings.Contains(errb.String(), codePrompt) {
		t.Fatalf("--begin: code %d stderr %q", code, errb.String())
	}
	secret := secretOf(t, otpauthRE.FindString(out.String()))
	out.Reset()
	errb.Reset()
	code = Main(context.Background(), dir, []string{"user", "totp", "enable", "alice", "--code", codeAt(t, secret, time.Now())}, failingReader{t}, &out, &errb, nil)
	if code != 0 || out.String() != "TOTP enabled for alice\n" {
		t.Fatalf("--code: code %d stdout %q stderr %q", code, out.String(), errb.String())
	}
	if !totpOn(t, s, "alice") {
		t.Error("TOTP off")
	}
	// Usage errors come from the command, in one request.
	if code, _, stderr := mainCmd(t, dir, "", "user", "totp", "enable"); code != 2 || !strings.Contains(stderr, "usage: reflector user totp enable NAME") {
		t.Errorf("no name: code %d stderr %q", code, stderr)
	}
	if code, _, stderr := mainCmd(t, dir, "", "user", "totp", "disable", "alice", "--force", "--code", "1"); code != 2 || !strings.Contains(stderr, "exclude each other") {
		t.Errorf("--force --code: code %d stderr %q", code, stderr)
	}
}

func TestMainCommandsOverSocketChangeServerStoreAndAudit(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	steps := [][]string{
		{"group", "add", "ops"},
		{"user", "add", "alice", "--group", "ops"},
		{"user", "passwd", "alice", "--password-stdin"},
		{"token", "create", "--user", "alice", "--name", "laptop", "--expires", "90d"},
		{"device", "add", "pump-1", "--group", "ops"},
		{"device", "set", "pump-1", "--ports", "22"},
	}
	for _, args := range steps {
		if code, stdout, stderr := mainCmd(t, dir, "new-password\n", args...); code != 0 {
			t.Fatalf("%q: code %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
	}
	if _, err := s.CheckPassword(context.Background(), "alice", "new-password"); err != nil {
		t.Errorf("password sent over the socket: %v", err)
	}
	env := testEnv{Store: s}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTokenCreate, User: "alice", Token: lastToken(t, s).ID, Reason: "laptop"})
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceSet, Device: "pump-1", Reason: "ports 22"})
	code, stdout, _ := mainCmd(t, dir, "", "audit", "--json", "--kind", "user.set")
	if code != 0 || !strings.Contains(stdout, `"reason":"password changed"`) {
		t.Errorf("audit over the socket: code %d\n%s", code, stdout)
	}
}

// lastToken returns the newest token in s.
func lastToken(t *testing.T, s *store.Store) store.Token {
	t.Helper()
	tokens, err := s.Tokens("")
	if err != nil || len(tokens) == 0 {
		t.Fatalf("Tokens: %v, %d", err, len(tokens))
	}
	return slices.MaxFunc(tokens, func(a, b store.Token) int { return a.Created.Compare(b.Created) })
}

// A dialogue may prompt before its first request, while the connection
// dialled up front sits idle; the server drops it after connTimeout. The
// session dials again rather than use it.
func TestSessionRedialsAfterAPromptOutlastsTheServersPatience(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	var out, errb bytes.Buffer
	s, code, ok := openSession(context.Background(), dir, &out, &errb, nil)
	if !ok {
		t.Fatalf("openSession: %d %s", code, errb.String())
	}
	if s.local != nil {
		t.Fatal("no server answered")
	}
	s.conn.Close() // as the server would have, after connTimeout
	s.dialed = time.Now().Add(-connTimeout)
	if code := s.close(s.do([]string{"user", "list"}, nil)); code != 0 || !strings.Contains(out.String(), "NAME") {
		t.Errorf("code %d stdout %q stderr %q", code, out.String(), errb.String())
	}
}
