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
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// remote-client, remote-ssh and remote-scp (issue 9) run unchanged against
// a real `reflector serve` with a device on our own agent (dev1) and one on
// the real WebTunnelAgent (wt1): each local connection
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
		skipUnlessCI(t, "remote-client cannot run here: %v", err)
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
// a device on our agent (dev1) and one on WebTunnelAgent (wt1), each with
// Basic and with Bearer credentials: the command's output comes back and
// remote-ssh exits 0.
func TestRemoteSSHRunsACommand(t *testing.T) {
	bin := macchinaTool(t, "remote-ssh")
	requireCommand(t, "ssh", "openssh-client")
	for _, d := range macchinaDevices {
		needHostsEntry(t, d+".localhost")
	}
	s := newMacchinaStackWithWT(t)
	for _, dev := range macchinaDevices {
		for _, auth := range s.auths(t) {
			t.Run(dev+"/"+auth.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				msg := "hello over remote-ssh to " + dev
				args := append(append([]string{}, auth.args...), "-R", fmt.Sprint(s.ssh), "-l", "alice", "-m", msg)
				args = append(append(args, macchinaTLS...), fmt.Sprintf("https://%s.localhost:%d", dev, s.port), "--",
					"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
					"-o", "BatchMode=yes", "-o", "LogLevel=ERROR")
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "ran: "+msg) {
					t.Fatalf("remote-ssh to %s (%s): %v\n%s", dev, auth.name, err, out)
				}
			})
		}
	}
}

// TestRemoteSCPCopiesAFile runs remote-scp (scp's legacy protocol, -O,
// through remote-client's forwarder) to upload a 1 MiB random file to the
// Go SSH server on the device, which runs the local scp for `scp -t`/`scp
// -f`, and to download it back, for a device on our agent (dev1) and one on
// WebTunnelAgent (wt1), each with Basic and with Bearer credentials: both
// copies arrive whole (SHA-256).
//
// remote-scp takes no reflector URL: it connects to https://<device host>
// on the default port 443 (the SDK builds "https://" + the host of
// user@host:path, and has no port option). The test relays 127.0.0.1:443 to
// the stack's port, so it needs to bind port 443 (CI runs as root).
func TestRemoteSCPCopiesAFile(t *testing.T) {
	macchinaTool(t, "remote-scp")
	requireCommand(t, "scp", "openssh-client")
	if _, err := os.Stat("/usr/bin/scp"); err != nil {
		skipUnlessCI(t, "the test SSH server runs /usr/bin/scp (Debian: openssh-client): %v", err)
	}
	for _, d := range macchinaDevices {
		needHostsEntry(t, d+".localhost")
	}
	s := newMacchinaStackWithWT(t)
	relay443(t, s.port)

	local := t.TempDir()
	src := filepath.Join(local, "src.bin")
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	for _, dev := range macchinaDevices {
		for _, auth := range s.auths(t) {
			t.Run(dev+"/"+auth.name, func(t *testing.T) {
				remote := filepath.Join(t.TempDir(), "up.bin") // on the "device"
				s.remoteSCP(t, auth.args, src, "alice@"+dev+".localhost:"+remote)
				if got, err := os.ReadFile(remote); err != nil || sha256.Sum256(got) != want {
					t.Fatalf("upload to %s: %d bytes (%v), want %d with the same SHA-256", dev, len(got), err, len(data))
				}
				back := filepath.Join(t.TempDir(), "down.bin")
				s.remoteSCP(t, auth.args, "alice@"+dev+".localhost:"+remote, back)
				if got, err := os.ReadFile(back); err != nil || sha256.Sum256(got) != want {
					t.Fatalf("download from %s: %d bytes (%v), want %d with the same SHA-256", dev, len(got), err, len(data))
				}
			})
		}
	}
}

// remoteSCP runs remote-scp with auth from source to target, forwarding to
// the device's SSH port, with the legacy scp protocol and no ssh
// configuration or known hosts, and fails the test unless it exits 0.
func (s *macchinaStack) remoteSCP(t *testing.T, auth []string, source, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{}, auth...), "-R", fmt.Sprint(s.ssh))
	args = append(append(args, macchinaTLS...), "--", "-O",
		"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", source, target)
	cmd := exec.CommandContext(ctx, macchinaTool(t, "remote-scp"), args...)
	cmd.Env = append(os.Environ(), "HOME="+s.homeDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("remote-scp %s %s: %v\n%s", source, target, err, out)
	}
}

// relay443 relays 127.0.0.1:443 to 127.0.0.1:port until the test ends, for
// remote-scp, which always connects to port 443. It skips the test when
// the port cannot be had (skipUnlessCI).
func relay443(t *testing.T, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		skipUnlessCI(t, "remote-scp always connects to port 443, and this test cannot listen there to relay to the reflector: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return
				}
				defer r.Close()
				go func() { io.Copy(r, c); r.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, r)
			}()
		}
	}()
}

// TestRemoteClientForwardsAPortOfAWebTunnelAgentDevice: the same client
// against a device on the real WebTunnelAgent, whose password the reflector
// adopted.
func TestRemoteClientForwardsAPortOfAWebTunnelAgentDevice(t *testing.T) {
	macchinaTool(t, "remote-client")
	needHostsEntry(t, "wt1.localhost")
	s := newMacchinaStackWithWT(t)
	for _, auth := range s.auths(t) {
		t.Run(auth.name, func(t *testing.T) {
			local, out := startRemoteClient(t, s, "wt1", auth.args, s.echo)
			echoThrough(t, local, 1<<20, out)
		})
	}
	// The operator's view of the device: kind, agent, its properties file's
	// values, and the traffic just carried.
	show := s.cmd(t, "", "device", "show", "wt1")
	for _, re := range []string{`(?m)^kind\s+webtunnel$`, `(?m)^agent\s+WebTunnelAgent/`,
		`(?m)^property deviceName\s+Pump 17$`, fmt.Sprintf(`(?m)^property httpPort\s+%d$`, s.echo),
		fmt.Sprintf(`(?m)^status\s+online .*\(webtunnel\), agent ports (%[1]d,%[2]d|%[2]d,%[1]d)$`, s.echo, s.ssh),
		`(?m)^streams\s+0 open; 2\.0 MiB from the device, 2\.0 MiB to it`} {
		if !regexp.MustCompile(re).MatchString(show) {
			t.Errorf("device show lacks %s:\n%s", re, show)
		}
	}
}
