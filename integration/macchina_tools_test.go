package integration

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"
)

// The client tools of macchina.io REMOTE (issue 9), run unchanged against a
// real `reflector serve` with a device on our own agent and, where the
// issue asks for both, one on the real WebTunnelAgent: remote-login gets a
// token, remote-connect carries bytes with Basic credentials and with a
// token, on its own and as OpenSSH's ProxyCommand.

// macchinaBin holds the tools, relative to this package's directory: the
// SDK's release binaries, kept in the repository so that every clone runs
// these tests (testdata/macchina-sdk-2.5.0/README.md says where they come
// from and what they need).
const macchinaBin = "testdata/macchina-sdk-2.5.0/bin"

// macchinaTLS makes a tool accept the reflector's self-signed certificate.
var macchinaTLS = []string{"-Dtls.acceptUnknownCertificate=true", "-Dtls.verification=none"}

// macchinaTool returns the path of a tool, or skips the test when it cannot
// run at all (not an x86-64 Linux machine; skipUnlessCI). Missing libraries
// show up as an exit status and fail the test.
func macchinaTool(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(macchinaBin, name))
	if err != nil {
		t.Fatal(err)
	}
	err = exec.Command(p, "--version").Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		skipUnlessCI(t, "the macchina.io REMOTE tool %s cannot run here: %v", p, err)
	}
	return p
}

// macchinaRun runs a tool to completion with stdin, in a HOME of its own
// (remote-login keeps its token in ~/.remote-credentials.properties).
func macchinaRun(t *testing.T, home, stdin, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, macchinaTool(t, name), args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Dir = home
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		skipUnlessCI(t, "the macchina.io REMOTE tool %s cannot run here: %v", name, err)
	}
	return string(out), err
}

// needHostsEntry makes name resolve to 127.0.0.1 through /etc/hosts.
// remote-connect checks its target with the system resolver before it
// sends CONNECT with the name, and glibc does not resolve *.localhost
// (curl special-cases it), so tests add the names they use (CI runs as
// root). The line is left in place: *.localhost is loopback anyway
// (RFC 6761), and other test binaries may rely on it concurrently.
func needHostsEntry(t *testing.T, name string) {
	t.Helper()
	const hosts = "/etc/hosts"
	data, err := os.ReadFile(hosts)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[0], "#") && slices.Contains(f[1:], name) {
			return
		}
	}
	f, err := os.OpenFile(hosts, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		skipUnlessCI(t, "remote-connect resolves its target itself and %s is not in %s, which this user cannot change (%v): "+
			"add \"127.0.0.1 %s\" to run this test", name, hosts, err, name)
	}
	defer f.Close()
	sep := ""
	if len(data) > 0 && data[len(data)-1] != '\n' {
		sep = "\n"
	}
	if _, err := fmt.Fprintf(f, "%s127.0.0.1 %s\n", sep, name); err != nil {
		t.Fatalf("add %s to %s: %v", name, hosts, err)
	}
}

// macchinaStack is a running reflector with user alice (password
// alicePass, group plant-a) and device dev1 of plant-a on our own agent,
// which forwards to an echo server and an SSH server.
type macchinaStack struct {
	data    string
	port    int
	url     string // https://127.0.0.1:port, as the tools are given it
	echo    uint16
	ssh     uint16
	srv     *proc
	homeDir string
	tok     string // alice's token, made on first use by token
}

// macchinaDevices are the devices a stack made by newMacchinaStackWithWT
// has, both in plant-a and forwarding the echo and SSH ports: dev1 on our
// own agent, wt1 on the real WebTunnelAgent.
var macchinaDevices = []string{"dev1", "wt1"}

// newMacchinaStackWithWT is newMacchinaStack plus device wt1 of plant-a
// on the real WebTunnelAgent (password adopted from the agent's
// configuration), forwarding the same echo and SSH ports, and online. It
// skips the test when WebTunnelAgent cannot run.
func newMacchinaStackWithWT(t *testing.T, serveFlags ...string) *macchinaStack {
	t.Helper()
	macchinaTool(t, "WebTunnelAgent")
	s := newMacchinaStack(t, serveFlags...)
	s.cmd(t, "wt1-pass\n", "device", "add", "wt1", "--group", "plant-a", "--secret-stdin")
	out := startWTAgent(t, wtAgentProperties(fmt.Sprintf("127.0.0.1:%d", s.port), "wt1", "wt1-pass", s.echo, s.ssh))
	deadline := time.Now().Add(20 * time.Second)
	for {
		list := s.cmd(t, "", "device", "list")
		if regexp.MustCompile(`(?m)^wt1\s.*online`).MatchString(list) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("WebTunnelAgent not online within 20 s:\n%s\nagent:\n%s", list, out())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// token returns a token of alice's, created on first use.
func (s *macchinaStack) token(t *testing.T) string {
	t.Helper()
	if s.tok == "" {
		out := s.cmd(t, "", "token", "create", "--user", "alice", "--name", "tools", "--expires", "1d")
		if s.tok = tokenPattern.FindString(out); s.tok == "" {
			t.Fatalf("no token in:\n%s", out)
		}
	}
	return s.tok
}

// macchinaAuth is one way the tools authenticate alice to the reflector.
type macchinaAuth struct {
	name string   // subtest name: basic or bearer
	args []string // the tool's options
}

// auths returns alice's password (Basic) and a token of hers (Bearer), in
// that order, as tool options.
func (s *macchinaStack) auths(t *testing.T) []macchinaAuth {
	t.Helper()
	return []macchinaAuth{
		{"basic", []string{"-u", "alice", "-p", alicePass}},
		{"bearer", []string{"-t", s.token(t)}},
	}
}

const alicePass = "alice-pass"

func newMacchinaStack(t *testing.T, serveFlags ...string) *macchinaStack {
	t.Helper()
	s := &macchinaStack{data: t.TempDir(), port: freePort(t), homeDir: t.TempDir()}
	s.url = fmt.Sprintf("https://127.0.0.1:%d", s.port)
	var fp string
	s.srv, fp = serveProc(t, s.data, s.port, serveFlags...)
	s.cmd(t, "", "group", "add", "plant-a")
	s.cmd(t, alicePass+"\n", "user", "add", "alice", "--group", "plant-a", "--password-stdin")
	s.echo = echoServer(t)
	s.ssh = sshServer(t)
	ports := fmt.Sprintf("%d,%d", s.echo, s.ssh)
	out := s.cmd(t, "", "device", "add", "dev1", "--group", "plant-a", "--ports", ports)
	secret := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`).FindStringSubmatch(out)
	if secret == nil {
		t.Fatalf("device add printed no secret:\n%s", out)
	}
	startProc(t, []string{"REFLECTOR_DEVICE_SECRET=" + secret[1]}, "reflector-agent",
		"--reflector", s.url, "--device", "dev1", "--ports", ports, "--fingerprint", fp)
	waitFor(t, func() bool {
		out, _ := reflectorCmd(t, "", "device", "list", "--data", s.data)
		return regexp.MustCompile(`(?m)^dev1\s.*online`).MatchString(out)
	})
	return s
}

// cmd runs an admin command against the stack's data directory.
func (s *macchinaStack) cmd(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := reflectorCmd(t, stdin, append(args, "--data", s.data)...)
	if err != nil {
		t.Fatalf("reflector %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// remoteLogin runs remote-login as alice and returns the token it stored.
func (s *macchinaStack) remoteLogin(t *testing.T, stdin, password string) (token, out string, err error) {
	t.Helper()
	os.Remove(filepath.Join(s.homeDir, ".remote-credentials.properties"))
	out, err = macchinaRun(t, s.homeDir, stdin, "remote-login",
		append([]string{"-R", s.url, "-u", "alice", "-p", password}, macchinaTLS...)...)
	creds, _ := os.ReadFile(filepath.Join(s.homeDir, ".remote-credentials.properties"))
	if m := regexp.MustCompile(`(?m)^remote\.token\s*=\s*(\S+)`).FindSubmatch(creds); m != nil {
		token = string(m[1])
	}
	return token, out, err
}

// checkEcho sends a line through a CONNECT tunnel opened with alice's
// secret (password or token) and reads it back.
func (s *macchinaStack) checkEcho(t *testing.T, secret string) {
	t.Helper()
	c := connectVia(t, s.port, "alice", secret, fmt.Sprintf("dev1.localhost:%d", s.echo))
	defer c.Close()
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

func TestRemoteLoginGetsATokenThatWorksAsProxyPassword(t *testing.T) {
	macchinaTool(t, "remote-login")
	s := newMacchinaStack(t)

	tok, out, err := s.remoteLogin(t, "", alicePass)
	if err != nil || !strings.Contains(out, "Login successful") || !tokenPattern.MatchString(tok) {
		t.Fatalf("remote-login: %v, token %q\n%s", err, tok, out)
	}
	s.checkEcho(t, tok)
	list := s.cmd(t, "", "token", "list")
	if !strings.Contains(list, "WebTunnelLogin-") {
		t.Fatalf("token list lacks remote-login's token:\n%s", list)
	}
	audit := s.cmd(t, "", "audit", "--kind", "token.create")
	if !strings.Contains(audit, "remote-login WebTunnelLogin") {
		t.Fatalf("audit lacks the token:\n%s", audit)
	}

	// remote-login exits 0 when refused; it says so and stores nothing.
	tok, out, _ = s.remoteLogin(t, "", "wrong-pass")
	if !strings.Contains(out, "Login failed") || tok != "" {
		t.Fatalf("remote-login with a wrong password: %v, token %q\n%s", err, tok, out)
	}
}

func TestRemoteLoginAsksATOTPUserForTheCode(t *testing.T) {
	macchinaTool(t, "remote-login")
	s := newMacchinaStack(t)
	out := s.cmd(t, "", "user", "totp", "enable", "alice", "--begin")
	raw := regexp.MustCompile(`otpauth://totp/\S+`).FindString(out)
	u, err := url.Parse(raw)
	if raw == "" || err != nil {
		t.Fatalf("no otpauth URL (%v) in:\n%s", err, out)
	}
	secret := u.Query().Get("secret")
	now := time.Now()
	code, err := totp.GenerateCode(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd(t, "", "user", "totp", "enable", "alice", "--code", code)

	// Codes are single use and the reflector accepts one step of skew:
	// the next step's code is fresh.
	next, err := totp.GenerateCode(secret, now.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tok, out, err := s.remoteLogin(t, next+"\n", alicePass)
	if err != nil || !strings.Contains(out, "One-Time Password") || !tokenPattern.MatchString(tok) {
		t.Fatalf("remote-login with TOTP: %v, token %q\n%s", err, tok, out)
	}
	s.checkEcho(t, tok)

	// The same code again is refused.
	if tok, out, _ = s.remoteLogin(t, next+"\n", alicePass); !strings.Contains(out, "Login failed") || tok != "" {
		t.Fatalf("remote-login with a spent code: %v, token %q\n%s", err, tok, out)
	}
}

// TestRemoteConnectCarriesBytesToADeviceOnOurAgent runs remote-connect as
// netcat: its stdin and stdout are the device's echo port.
func TestRemoteConnectCarriesBytesToADeviceOnOurAgent(t *testing.T) {
	bin := macchinaTool(t, "remote-connect")
	needHostsEntry(t, "dev1.localhost")
	s := newMacchinaStack(t)
	out := s.cmd(t, "", "token", "create", "--user", "alice", "--name", "connect", "--expires", "1d")
	tok := tokenPattern.FindString(out)
	if tok == "" {
		t.Fatalf("no token in:\n%s", out)
	}
	target := fmt.Sprintf("dev1.localhost:%d", s.echo)
	for name, auth := range map[string][]string{
		"basic":  {"-u", "alice", "-p", alicePass},
		"bearer": {"-t", tok},
	} {
		t.Run(name, func(t *testing.T) {
			args := append(append(auth, "-R", s.url), macchinaTLS...)
			cmd := exec.Command(bin, append(args, target)...)
			cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				skipUnlessCI(t, "remote-connect cannot run here: %v", err)
			}
			defer cmd.Process.Kill()

			// More than one of the tools' 2,048-byte frames, in pieces.
			want := make([]byte, 100_000)
			rand.Read(want)
			go func() {
				for b := want; len(b) > 0; {
					n := min(len(b), 7000)
					if _, err := stdin.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
			}()
			got := make([]byte, len(want))
			done := make(chan error, 1)
			go func() { _, err := io.ReadFull(stdout, got); done <- err }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("read back: %v\nstderr: %s", err, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("echo not back within 20s\nstderr: %s", stderr.String())
			}
			if string(got) != string(want) {
				t.Fatal("echo differs")
			}
			stdin.Close()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("remote-connect exit: %v\nstderr: %s", err, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("remote-connect did not exit after stdin closed\nstderr: %s", stderr.String())
			}
		})
	}
}

// TestRemoteConnectAsSSHProxyCommand runs OpenSSH's client with
// remote-connect as its ProxyCommand against a Go SSH server on the device,
// for a device on our agent (dev1) and one on WebTunnelAgent (wt1), each
// with Basic and with Bearer credentials: the command's output comes back.
func TestRemoteConnectAsSSHProxyCommand(t *testing.T) {
	bin := macchinaTool(t, "remote-connect")
	sshBin := requireCommand(t, "ssh", "openssh-client")
	for _, d := range macchinaDevices {
		needHostsEntry(t, d+".localhost")
	}
	s := newMacchinaStackWithWT(t)
	tls := strings.Join(macchinaTLS, " ")
	for _, dev := range macchinaDevices {
		for _, auth := range s.auths(t) {
			t.Run(dev+"/"+auth.name, func(t *testing.T) {
				proxy := fmt.Sprintf("%s %s -R %s %s %%h:%%p", bin, strings.Join(auth.args, " "), s.url, tls)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				msg := "hello over remote-connect to " + dev
				cmd := exec.CommandContext(ctx, sshBin, "-F", "/dev/null",
					"-o", "ProxyCommand="+proxy,
					"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
					"-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
					"-p", fmt.Sprint(s.ssh), "alice@"+dev+".localhost", msg)
				cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "ran: "+msg) {
					t.Fatalf("ssh to %s via remote-connect (%s): %v\n%s", dev, auth.name, err, out)
				}
			})
		}
	}
}

// sshServer is a minimal SSH server on 127.0.0.1 that lets anybody in and
// answers an exec request with "ran: <command>", or runs scp's far side
// for `scp -t`/`scp -f` (serveSSHSession).
func sshServer(t testing.TB) uint16 {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	return serveTCP(t, func(c net.Conn) {
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			if nc.ChannelType() != "session" {
				nc.Reject(ssh.UnknownChannelType, "session only")
				continue
			}
			ch, chReqs, err := nc.Accept()
			if err != nil {
				return
			}
			go serveSSHSession(ch, chReqs)
		}
	})
}

// serveSSHSession answers the session's first exec request. `scp -t …`
// and `scp -f …` (what scp's legacy protocol runs on the far side) run the
// local scp with the channel as its stdin and stdout; anything else gets
// "ran: <command>". The exit status is the command's.
func serveSSHSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		status := uint32(0)
		if args := strings.Fields(payload.Command); len(args) > 1 && args[0] == "scp" && (args[1] == "-t" || args[1] == "-f") {
			status = runSCP(ch, args[1:])
		} else {
			w := bufio.NewWriter(ch)
			fmt.Fprintf(w, "ran: %s\n", payload.Command)
			w.Flush()
		}
		ch.CloseWrite()
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// runSCP runs /usr/bin/scp with args (no shell) on the channel and returns
// its exit status (255 when it cannot run).
func runSCP(ch ssh.Channel, args []string) uint32 {
	cmd := exec.Command("/usr/bin/scp", args...)
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "scp: %v\n", err)
		return 255
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "scp: %v\n", err)
		return 255
	}
	// Not waited for: scp may be done before the client's EOF, and this
	// copy ends when the channel closes.
	go func() { io.Copy(stdin, ch); stdin.Close() }()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return uint32(exit.ExitCode())
	default:
		fmt.Fprintf(ch.Stderr(), "scp: %v\n", err)
		return 255
	}
}
