package integration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// remote-client and remote-ssh (issue 9) run unchanged against a real
// `reflector serve` with a device on our own agent: each local connection
// becomes a WebSocket upgrade (POST /, com.appinf.webtunnel.client/1.0,
// X-WebTunnel-RemotePort) on the device's host, dev1.localhost.

// startRemoteClient runs remote-client forwarding 127.0.0.1:<local> to the
// device port of device (https://<device>.localhost:<the stack's port>), and
// waits until the local port accepts.
func startRemoteClient(t *testing.T, s *macchinaStack, device string, auth []string, devPort uint16) (local int, out *lockedBuffer) {
	t.Helper()
	bin := macchinaTool(t, "remote-client")
	local = freePort(t)
	args := append(append([]string{}, auth...),
		"-R", fmt.Sprint(devPort), "-L", fmt.Sprint(local), "-b", "127.0.0.1")
	args = append(append(args, macchinaTLS...), fmt.Sprintf("https://%s.localhost:%d", device, s.port))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
	out = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Skipf("remote-client cannot run here: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), time.Second)
		if err == nil {
			c.Close()
			return local, out
		}
		select {
		case <-exited:
			t.Fatalf("remote-client exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote-client not listening on %d within 10 s: %v\n%s", local, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoThrough sends size random bytes through the local port while reading
// the echo, and compares checksums.
func echoThrough(t *testing.T, local, size int, out *lockedBuffer) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	want := make([]byte, size)
	rand.Read(want)
	go func() {
		for b := want; len(b) > 0; {
			n := min(len(b), 7000)
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	h := sha256.New()
	n, err := io.CopyN(h, c, int64(size))
	if err != nil {
		t.Fatalf("read back %d of %d bytes: %v\nremote-client: %s", n, size, err, out.String())
	}
	if got, exp := h.Sum(nil), sha256.Sum256(want); string(got) != string(exp[:]) {
		t.Fatal("echo differs")
	}
}

func TestRemoteClientForwardsAPortOfADeviceOnOurAgent(t *testing.T) {
	macchinaTool(t, "remote-client")
	needHostsEntry(t, "dev1.localhost")
	s := newMacchinaStack(t)
	out := s.cmd(t, "", "token", "create", "--user", "alice", "--name", "client", "--expires", "1d")
	tok := tokenPattern.FindString(out)
	if tok == "" {
		t.Fatalf("no token in:\n%s", out)
	}
	for name, auth := range map[string][]string{
		"basic":  {"-u", "alice", "-p", alicePass},
		"bearer": {"-t", tok},
	} {
		t.Run(name, func(t *testing.T) {
			local, out := startRemoteClient(t, s, "dev1", auth, s.echo)
			echoThrough(t, local, 1<<20, out)
			// A second connection is a second upgrade.
			echoThrough(t, local, 10_000, out)
		})
	}
	audit := s.cmd(t, "", "audit", "--kind", "stream")
	if n := strings.Count(audit, "webtunnel"); n < 4 {
		t.Errorf("audit has %d webtunnel streams, want 4:\n%s", n, audit)
	}
}

func TestRemoteClientWithAWrongPasswordCarriesNothing(t *testing.T) {
	macchinaTool(t, "remote-client")
	needHostsEntry(t, "dev1.localhost")
	s := newMacchinaStack(t)
	local, out := startRemoteClient(t, s, "dev1", []string{"-u", "alice", "-p", "wrong-pass"}, s.echo)
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping")
	if n, err := io.ReadFull(c, make([]byte, 4)); err == nil {
		t.Fatalf("echo through a refused client: %d bytes\n%s", n, out.String())
	}
	// The reflector refused it (a failed login, throttled like every
	// login) and opened nothing.
	audit := s.cmd(t, "", "audit")
	if !regexp.MustCompile(`(?m)\blogin\s+NO\s+alice\b`).MatchString(audit) || strings.Contains(audit, "webtunnel") {
		t.Errorf("audit lacks the failed login or has a stream:\n%s", audit)
	}
}

// TestRemoteSSHRunsACommand runs remote-ssh, which starts remote-client's
// forwarder and OpenSSH's client through it, against the Go SSH server on
// the device.
func TestRemoteSSHRunsACommand(t *testing.T) {
	bin := macchinaTool(t, "remote-ssh")
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("OpenSSH client (ssh) not installed")
	}
	needHostsEntry(t, "dev1.localhost")
	s := newMacchinaStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-u", "alice", "-p", alicePass, "-R", fmt.Sprint(s.ssh), "-l", "alice",
		"-m", "hello over remote-ssh"}, macchinaTLS...)
	args = append(args, fmt.Sprintf("https://dev1.localhost:%d", s.port), "--",
		"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ran: hello over remote-ssh") {
		t.Fatalf("remote-ssh: %v\n%s", err, out)
	}
}

// TestRemoteClientForwardsAPortOfAWebTunnelAgentDevice: the same client
// against a device on the real WebTunnelAgent, whose password the reflector
// adopted.
func TestRemoteClientForwardsAPortOfAWebTunnelAgentDevice(t *testing.T) {
	macchinaTool(t, "remote-client")
	macchinaTool(t, "WebTunnelAgent")
	needHostsEntry(t, "wt1.localhost")
	s := newMacchinaStack(t)
	s.cmd(t, "wt1-pass\n", "device", "add", "wt1", "--group", "plant-a", "--secret-stdin")
	out := startWTAgent(t, wtAgentProperties(fmt.Sprintf("127.0.0.1:%d", s.port), "wt1", "wt1-pass", s.echo))
	deadline := time.Now().Add(20 * time.Second)
	for {
		list := s.cmd(t, "", "device", "list")
		if regexp.MustCompile(`(?m)^wt1\s.*online`).MatchString(list) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WebTunnelAgent not online within 20 s:\n%s\nagent:\n%s", list, out())
		}
		time.Sleep(100 * time.Millisecond)
	}
	tokOut := s.cmd(t, "", "token", "create", "--user", "alice", "--name", "client", "--expires", "1d")
	tok := tokenPattern.FindString(tokOut)
	if tok == "" {
		t.Fatalf("no token in:\n%s", tokOut)
	}
	for name, auth := range map[string][]string{
		"basic":  {"-u", "alice", "-p", alicePass},
		"bearer": {"-t", tok},
	} {
		t.Run(name, func(t *testing.T) {
			local, out := startRemoteClient(t, s, "wt1", auth, s.echo)
			echoThrough(t, local, 1<<20, out)
		})
	}
}
