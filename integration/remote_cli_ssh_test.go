package integration

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// sshOpts are the OpenSSH options of these tests: no configuration, no
// host key kept, no password asked.
var sshOpts = []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
	"-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}

// TestRemoteCLIConnectAsOpenSSHProxyCommand runs OpenSSH's client with
// `remote connect %h %p` as its ProxyCommand, as docs/laptop.md's
// ~/.ssh/config line does, and a remote command's output comes back.
func TestRemoteCLIConnectAsOpenSSHProxyCommand(t *testing.T) {
	sshBin := requireCommand(t, "ssh", "openssh-client")
	port := sshExitServer(t)
	d := deploy(t, fmt.Sprint(port))
	env := d.tokenEnv(t)
	args := append(append([]string{}, sshOpts...), "-o", "ProxyCommand="+remoteBin(t)+" connect %h %p",
		"-p", fmt.Sprint(port), "pi@pump-17.localhost", "uname -a")
	cmd := exec.Command(sshBin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ran: uname -a") {
		t.Fatalf("ssh with remote connect as ProxyCommand: %v\n%s", err, out)
	}
}

// TestRemoteCLISSHPassesTheExitCode runs `remote ssh`: the remote command's
// exit code is remote's, the -l login and ssh's options after the device
// pass through. `remote scp` copies a file up and back down (the
// pi@pump-17:file form), and so does `remote sftp` in batch mode. Without
// ssh on the PATH, remote says so.
func TestRemoteCLISSHPassesTheExitCode(t *testing.T) {
	requireCommand(t, "ssh", "openssh-client")
	requireCommand(t, "scp", "openssh-client")
	port := sshExitServer(t)
	d := deploy(t, fmt.Sprint(port))
	env := d.tokenEnv(t)
	p := fmt.Sprint(port)
	for _, code := range []int{0, 3, 42} {
		args := append(append([]string{"ssh", "--port", p, "-l", "pi", "pump-17"}, sshOpts...), "exit", strconv.Itoa(code))
		out, errOut, got := runRemote(t, env, "", args...)
		if got != code || !strings.Contains(out, "user pi ran: exit "+strconv.Itoa(code)) {
			t.Fatalf("remote ssh … exit %d: exit code %d\nstdout: %s\nstderr: %s", code, got, out, errOut)
		}
	}

	// scp up and down, with ssh's legacy protocol (-O) that the test's SSH
	// server runs; the device path is under a directory of the test.
	dir := t.TempDir()
	local := filepath.Join(dir, "up.txt")
	os.WriteFile(local, []byte("file through remote scp\n"), 0o644)
	remotePath := filepath.Join(dir, "on-device.txt")
	scp := func(args ...string) {
		t.Helper()
		all := append(append([]string{"scp", "--port", p, "-O"}, sshOpts...), args...)
		if out, errOut, code := runRemote(t, env, "", all...); code != 0 {
			t.Fatalf("remote %s: exit %d\n%s%s", strings.Join(all, " "), code, out, errOut)
		}
	}
	scp(local, "pi@pump-17:"+remotePath)
	back := filepath.Join(dir, "back.txt")
	scp("pi@pump-17:"+remotePath, back)
	if b, err := os.ReadFile(back); err != nil || string(b) != "file through remote scp\n" {
		t.Fatalf("scp round trip: %q %v", b, err)
	}

	// sftp, a put and a get in batch mode.
	if _, err := os.Stat(sftpServer); err != nil {
		skipUnlessCI(t, "%s missing (Debian: apt-get install --no-install-recommends openssh-sftp-server): %v", sftpServer, err)
	}
	requireCommand(t, "sftp", "openssh-client")
	sftpBack := filepath.Join(dir, "sftp-back.txt")
	batch := fmt.Sprintf("put %s %s\nget %s %s\n", local, filepath.Join(dir, "sftp-up.txt"), filepath.Join(dir, "sftp-up.txt"), sftpBack)
	all := append(append([]string{"sftp", "--port", p, "-l", "pi", "-b", "-"}, sshOpts...), "pump-17")
	if out, errOut, code := runRemote(t, env, batch, all...); code != 0 {
		t.Fatalf("remote %s: exit %d\n%s%s", strings.Join(all, " "), code, out, errOut)
	}
	if b, err := os.ReadFile(sftpBack); err != nil || string(b) != "file through remote scp\n" {
		t.Fatalf("sftp round trip: %q %v", b, err)
	}

	// No ssh on the PATH.
	noSSH := append(env, "PATH="+t.TempDir())
	_, errOut, code := runRemote(t, noSSH, "", "ssh", "pump-17")
	if code == 0 || !strings.Contains(errOut, "ssh is not installed") {
		t.Fatalf("remote ssh without ssh: exit %d: %s", code, errOut)
	}
}

// sshExitServer is an SSH server on 127.0.0.1 that lets anybody in and
// answers an exec request with "user U ran: <command>"; "exit N" ends
// with status N, and `scp -t`/`scp -f` run scp's far side (runSCP). The
// sftp subsystem is OpenSSH's sftp-server (runSFTPServer).
func sshExitServer(t testing.TB) uint16 {
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
		conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
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
			go func() {
				defer ch.Close()
				for req := range chReqs {
					if req.Type == "subsystem" {
						var sub struct{ Name string }
						if ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" {
							req.Reply(false, nil)
							continue
						}
						req.Reply(true, nil)
						go ssh.DiscardRequests(chReqs)
						status := runSFTPServer(ch)
						ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
						return
					}
					if req.Type != "exec" {
						req.Reply(false, nil)
						continue
					}
					var payload struct{ Command string }
					if ssh.Unmarshal(req.Payload, &payload) != nil {
						req.Reply(false, nil)
						return
					}
					req.Reply(true, nil)
					go ssh.DiscardRequests(chReqs)
					status := uint32(0)
					args := strings.Fields(payload.Command)
					switch {
					case len(args) > 1 && args[0] == "scp" && (args[1] == "-t" || args[1] == "-f"):
						status = runSCP(ch, args[1:])
					default:
						if len(args) == 2 && args[0] == "exit" {
							n, _ := strconv.Atoi(args[1])
							status = uint32(n)
						}
						w := bufio.NewWriter(ch)
						fmt.Fprintf(w, "user %s ran: %s\n", conn.User(), payload.Command)
						w.Flush()
					}
					ch.CloseWrite()
					ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
					return
				}
			}()
		}
	})
}

// sftpServer is OpenSSH's sftp-server, which the sftp subsystem of
// sshExitServer runs (Debian: openssh-sftp-server, which openssh-server
// depends on).
const sftpServer = "/usr/lib/openssh/sftp-server"

// runSFTPServer runs sftpServer on the channel and returns its exit
// status (255 when it cannot run).
func runSFTPServer(ch ssh.Channel) uint32 {
	cmd := exec.Command(sftpServer)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return uint32(exit.ExitCode())
	}
	return 255
}
