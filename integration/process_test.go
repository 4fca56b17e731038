package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the reflector and reflector-agent binaries built once for the
// tests that run them as a user would.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reflector-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, cmd := range []string{"reflector", "reflector-agent"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../cmd/"+cmd)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", cmd, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose output the test watches.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // stdout and stderr, interleaved
	done   chan struct{}
	waitMu sync.Once
}

func startProc(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(filepath.Join(binDir, name), args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { p.cmd.Wait(); pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitOutput waits until the output matches re and returns the submatches.
func (p *proc) waitOutput(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(p.output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := rx.FindStringSubmatch(p.output()); m != nil {
				return m
			}
			p.t.Fatalf("%s exited before printing %q:\n%s", p.cmd.Path, re, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s did not print %q within 15s:\n%s", p.cmd.Path, re, p.output())
	return nil
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not exit within 15s of SIGTERM", p.cmd.Path)
	}
}

// reflectorCmd runs an admin command to completion.
func reflectorCmd(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "reflector"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveProc starts `reflector serve` on 127.0.0.1:port with dataDir.
func serveProc(t testing.TB, dataDir string, port int, extra ...string) (*proc, string) {
	t.Helper()
	args := append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", dataDir}, extra...)
	p := startProc(t, nil, "reflector", args...)
	fp := p.waitOutput(`TLS certificate fingerprint: (sha256:[0-9a-f]{64})`)[1]
	return p, fp
}

func TestServeDemoCurlLineWorksAsPrinted(t *testing.T) {
	requireCommand(t, "curl", "curl")
	p, _ := serveProc(t, t.TempDir(), freePort(t), "--demo")
	line := p.waitOutput(`try:\n  (curl [^\n]+)\n`)[1]
	out, err := exec.Command("sh", "-c", line+" --silent --show-error --max-time 20").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Hello from the demo device") {
		t.Fatalf("%s\n-> %v\n%s", line, err, out)
	}
}

func TestAdminCommandsWhileServerRunsAndAfter(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	srv, fp := serveProc(t, data, port)

	if out, err := reflectorCmd(t, "", "group", "add", "plant-a", "--data", data); err != nil {
		t.Fatalf("group add: %v\n%s", err, out)
	}
	if out, err := reflectorCmd(t, "alice-pass\n", "user", "add", "alice", "--group", "plant-a", "--password-stdin", "--data", data); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if out, err := reflectorCmd(t, "", "user", "list", "--data", data); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	echo := echoServer(t)
	out, err := reflectorCmd(t, "", "device", "add", "dev1", "--group", "plant-a", "--ports", fmt.Sprint(echo), "--data", data)
	if err != nil {
		t.Fatalf("device add: %v\n%s", err, out)
	}
	secret := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`).FindStringSubmatch(out)
	if secret == nil || !strings.Contains(out, "--fingerprint "+fp) {
		t.Fatalf("device add printed no secret or fingerprint:\n%s", out)
	}
	startProc(t, []string{"REFLECTOR_DEVICE_SECRET=" + secret[1]}, "reflector-agent",
		"--reflector", fmt.Sprintf("https://127.0.0.1:%d", port), "--device", "dev1",
		"--ports", fmt.Sprint(echo), "--fingerprint", fp)
	waitFor(t, func() bool {
		out, _ := reflectorCmd(t, "", "device", "list", "--data", data)
		return strings.Contains(out, "online")
	})

	// Through the proxy, as the user just added.
	c := connectVia(t, port, "alice", "alice-pass", fmt.Sprintf("dev1.localhost:%d", echo))
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	c.Close()

	if out, err := reflectorCmd(t, "", "device", "rm", "dev1", "--data", data); err != nil {
		t.Fatalf("device rm: %v\n%s", err, out)
	}
	srv.stop()
	out, err = reflectorCmd(t, "", "user", "list", "--data", data)
	if err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("user list without a server: %v\n%s", err, out)
	}
	if out, _ := reflectorCmd(t, "", "device", "list", "--data", data); strings.Contains(out, "dev1") {
		t.Fatalf("removed device listed:\n%s", out)
	}
}

func TestAgentReconnectsWithin5sAfterReflectorRestart(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	srv, fp := serveProc(t, data, port)
	out, err := reflectorCmd(t, "", "device", "add", "dev1", "--ports", "22", "--data", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	secret := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`).FindStringSubmatch(out)[1]
	agentProc := startProc(t, []string{"REFLECTOR_DEVICE_SECRET=" + secret}, "reflector-agent",
		"--reflector", fmt.Sprintf("https://127.0.0.1:%d", port), "--device", "dev1", "--ports", "22", "--fingerprint", fp)
	srv.waitOutput(`device connected`)

	srv.stop()
	agentProc.waitOutput(`disconnected`)
	restarted := time.Now()
	srv2, fp2 := serveProc(t, data, port)
	if fp2 != fp {
		t.Fatalf("certificate changed across restart: %s -> %s", fp, fp2)
	}
	srv2.waitOutput(`device connected`)
	if d := time.Since(restarted); d > 5*time.Second {
		t.Fatalf("agent back %v after the restart", d)
	}
}

func TestWrongDeviceSecretAgentBacksOffAndReflectorLogsOneLine(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	srv, fp := serveProc(t, data, port)
	if out, err := reflectorCmd(t, "", "device", "add", "dev1", "--data", data); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	agentProc := startProc(t, []string{"REFLECTOR_DEVICE_SECRET=wrong"}, "reflector-agent",
		"--reflector", fmt.Sprintf("https://127.0.0.1:%d", port), "--device", "dev1", "--ports", "22", "--fingerprint", fp)
	agentProc.waitOutput(`401`)
	time.Sleep(3 * time.Second) // a retry now would be a second line
	if n := strings.Count(srv.output(), "agent refused"); n != 1 {
		t.Fatalf("reflector logged %d refusals, want 1:\n%s", n, srv.output())
	}
}

// connectVia opens a CONNECT tunnel through the reflector on 127.0.0.1:port,
// trusting any certificate (the test checks the fingerprint elsewhere).
func connectVia(t *testing.T, port int, user, password, target string) net.Conn {
	t.Helper()
	c, err := tlsDialInsecure(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basic(user, password))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("CONNECT %s: %q %v", target, line, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	return c
}

// TestAgentEnrollsWithAKeyAndKeepsItsSecret runs the real agent binary with
// an enrolment key: it registers itself, keeps its secret in the state file
// (0600) and, restarted without the key, comes back with that secret. A key
// for one device is used up by the second, and an expired key is refused.
func TestAgentEnrollsWithAKeyAndKeepsItsSecret(t *testing.T) {
	data, dir := t.TempDir(), t.TempDir()
	port := freePort(t)
	_, fp := serveProc(t, data, port)
	for _, args := range [][]string{{"group", "add", "field", "--max-devices", "3"}, {"user", "add", "op", "--group", "field", "--password-stdin"}} {
		if out, err := reflectorCmd(t, "op-pass\n", append(args, "--data", data)...); err != nil {
			t.Fatalf("%s: %v\n%s", args, err, out)
		}
	}
	out, err := reflectorCmd(t, "", "enroll", "create", "--group", "field", "--max", "1", "--data", data)
	if err != nil {
		t.Fatalf("enroll create: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`rfe_[A-Za-z0-9_-]+`).FindString(out)
	if key == "" {
		t.Fatalf("no key in:\n%s", out)
	}
	echo := echoServer(t)
	reflectorURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	state := filepath.Join(dir, "pump-1.state")
	agentArgs := []string{"--reflector", reflectorURL, "--device", "pump-1", "--ports", fmt.Sprint(echo),
		"--fingerprint", fp, "--state", state}
	a := startProc(t, []string{"REFLECTOR_ENROLL_KEY=" + key}, "reflector-agent", agentArgs...)
	online := func() bool {
		out, _ := reflectorCmd(t, "", "device", "list", "--data", data)
		return regexp.MustCompile(`(?m)^pump-1\s.*online`).MatchString(out)
	}
	waitFor(t, online)
	fi, err := os.Stat(state)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v", err, fi.Mode().Perm())
	}
	if strings.Contains(a.output(), key) {
		t.Fatal("the agent logged its enrolment key")
	}
	c := connectVia(t, port, "op", "op-pass", fmt.Sprintf("pump-1.localhost:%d", echo))
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	c.Close()

	// Restarted without the key, the agent uses the secret it kept.
	a.stop()
	waitFor(t, func() bool { return !online() })
	startProc(t, nil, "reflector-agent", agentArgs...)
	waitFor(t, online)

	// The key was for one device: a second agent is refused, for good.
	second := startProc(t, []string{"REFLECTOR_ENROLL_KEY=" + key}, "reflector-agent",
		"--reflector", reflectorURL, "--device", "pump-2", "--ports", fmt.Sprint(echo),
		"--fingerprint", fp, "--state", filepath.Join(dir, "pump-2.state"))
	second.waitOutput(`(?i)quota|used up`)
	out, _ = reflectorCmd(t, "", "audit", "--kind", "device.enroll", "--data", data)
	if !strings.Contains(out, "pump-1") || !strings.Contains(out, "pump-2") {
		t.Fatalf("audit lacks the enrolments:\n%s", out)
	}
}

// TestCurlWithATokenAsTheREADMEShows runs the README's token lines with real
// curl against `reflector serve --demo`: the token as proxy password, and as
// a Bearer Proxy-Authorization header.
func TestCurlWithATokenAsTheREADMEShows(t *testing.T) {
	requireCommand(t, "curl", "curl")
	data := t.TempDir()
	port := freePort(t)
	serveProc(t, data, port, "--demo")
	out, err := reflectorCmd(t, "", "token", "create", "--user", "demo", "--name", "cli", "--expires", "1d", "--data", data)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	tok := tokenPattern.FindString(out)
	if tok == "" {
		t.Fatalf("no token in:\n%s", out)
	}
	proxy := fmt.Sprintf("https://localhost:%d", port)
	ca := filepath.Join(data, "tls-cert.pem")
	for name, auth := range map[string][]string{
		"basic":  {"--proxy-user", "demo:" + tok},
		"bearer": {"--proxy-header", "Proxy-Authorization: Bearer " + tok},
	} {
		args := append([]string{"-x", proxy, "--proxy-cacert", ca, "--silent", "--show-error", "--max-time", "20"}, auth...)
		out, err := exec.Command("curl", append(args, "http://demo.localhost/")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Hello from the demo device") {
			t.Fatalf("%s: curl %v\n-> %v\n%s", name, args, err, out)
		}
	}
	out, err = reflectorCmd(t, "", "token", "list", "--data", data)
	if err != nil || !strings.Contains(out, "cli") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
}

// deployment is a reflector as users run it: a real `reflector serve`, user
// alice in group plant with an API token, and device pump-17 served by a
// real reflector-agent process.
type deployment struct {
	data       string
	port       int
	srv, agent *proc
	token      string         // alice's API token
	pool       *x509.CertPool // trusts the reflector's certificate
}

// deploy starts a deployment whose agent allows ports; agentArgs are added
// to the agent's command line.
func deploy(tb testing.TB, ports string, agentArgs ...string) *deployment {
	tb.Helper()
	d := &deployment{data: tb.TempDir(), port: freePort(tb)}
	var fp string
	d.srv, fp = serveProc(tb, d.data, d.port, "--log-level", "warn")
	for _, args := range [][]string{{"group", "add", "plant"}, {"user", "add", "alice", "--group", "plant", "--password-stdin"}} {
		if out, err := reflectorCmd(tb, "alice-pass\n", append(args, "--data", d.data)...); err != nil {
			tb.Fatalf("%s: %v\n%s", args, err, out)
		}
	}
	out, err := reflectorCmd(tb, "", "token", "create", "--user", "alice", "--name", "test", "--data", d.data)
	if d.token = tokenPattern.FindString(out); err != nil || d.token == "" {
		tb.Fatalf("token create: %v\n%s", err, out)
	}
	out, err = reflectorCmd(tb, "", "device", "add", "pump-17", "--group", "plant", "--ports", ports, "--data", d.data)
	if err != nil {
		tb.Fatalf("device add: %v\n%s", err, out)
	}
	secret := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`).FindStringSubmatch(out)[1]
	d.agent = startProc(tb, []string{"REFLECTOR_DEVICE_SECRET=" + secret}, "reflector-agent",
		append([]string{"--reflector", fmt.Sprintf("https://127.0.0.1:%d", d.port), "--device", "pump-17",
			"--ports", ports, "--fingerprint", fp}, agentArgs...)...)
	waitFor(tb, func() bool {
		out, _ := reflectorCmd(tb, "", "device", "list", "--data", d.data)
		return strings.Contains(out, "online")
	})
	pem, err := os.ReadFile(filepath.Join(d.data, "tls-cert.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	d.pool = x509.NewCertPool()
	d.pool.AppendCertsFromPEM(pem)
	return d
}
