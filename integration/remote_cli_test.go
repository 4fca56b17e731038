package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The `remote` client (issue 20), run as the binary a user runs, against a
// real `reflector serve` and a real reflector-agent (deploy).

var (
	remoteBuild    sync.Once
	remoteBuildErr error
)

// remoteBin builds cmd/remote once into binDir and returns its path.
func remoteBin(t testing.TB) string {
	t.Helper()
	path := filepath.Join(binDir, "remote")
	remoteBuild.Do(func() {
		out, err := exec.Command("go", "build", "-o", path, "../cmd/remote").CombinedOutput()
		if err != nil {
			remoteBuildErr = fmt.Errorf("build remote: %v\n%s", err, out)
		}
	})
	if remoteBuildErr != nil {
		t.Fatal(remoteBuildErr)
	}
	return path
}

// remoteEnv is an environment for remote with a configuration directory of
// its own and nothing of the caller's REMOTE_* or proxy settings, plus
// extra.
func remoteEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "REMOTE_"), strings.EqualFold(name, "HTTPS_PROXY"), strings.EqualFold(name, "NO_PROXY"),
			name == "XDG_CONFIG_HOME", name == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config")), extra...)
}

// configDir is where remote keeps its files in env.
func configDir(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
			return filepath.Join(v, "reflector")
		}
	}
	return ""
}

// tokenEnv is remoteEnv with alice's token of d and the reflector's
// certificate as the CA file.
func (d *deployment) tokenEnv(t testing.TB, extra ...string) []string {
	return remoteEnv(t, append([]string{"REMOTE_URL=" + d.url(), "REMOTE_USER=alice", "REMOTE_TOKEN=" + d.token,
		"REMOTE_CA_FILE=" + filepath.Join(d.data, "tls-cert.pem")}, extra...)...)
}

// fingerprint is the pin of d's certificate, sha256:<hex>.
func (d *deployment) fingerprint(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.data, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("tls-cert.pem: no PEM block")
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (d *deployment) url() string { return fmt.Sprintf("https://localhost:%d", d.port) }

// runRemote runs remote to its end and returns its output and exit code.
func runRemote(t testing.TB, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, remoteBin(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("remote %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// TestRemoteCLIForwardMovesDataBothWaysThroughTwoPorts runs `remote
// forward` with two port mappings and sends 64 MiB through each at once;
// each comes back from the device's echo service intact. Then the device's
// tunnel drops: a connection made while it is down waits for the new
// tunnel and works. SIGTERM ends the forward cleanly. remote vnc without a
// viewer forwards the port it is given and prints where.
func TestRemoteCLIForwardMovesDataBothWaysThroughTwoPorts(t *testing.T) {
	echo1, echo2 := echoServer(t), echoServer(t)
	d := deploy(t, fmt.Sprintf("%d,%d", echo1, echo2))
	env := d.tokenEnv(t)
	fwd := startRemoteEnv(t, env, "forward", "pump-17", fmt.Sprintf("0:%d", echo1), fmt.Sprintf("0:%d", echo2))
	m1 := fwd.waitOutput(fmt.Sprintf(`(127\.0\.0\.1:\d+) -> pump-17 port %d\n`, echo1))
	m2 := fwd.waitOutput(fmt.Sprintf(`(127\.0\.0\.1:\d+) -> pump-17 port %d\n`, echo2))

	const size = 64 << 20
	var wg sync.WaitGroup
	for _, addr := range []string{m1[1], m2[1]} {
		wg.Go(func() {
			if err := echoRoundTrip(addr, size); err != nil {
				t.Errorf("through %s: %v", addr, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// The tunnel drops (the agent stops; its secret is rotated so that a
	// new agent can come back).
	d.agent.stop()
	out, err := reflectorCmd(t, "", "device", "rotate-secret", "pump-17", "--data", d.data)
	secret := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`).FindStringSubmatch(out)
	if err != nil || secret == nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- echoRoundTrip(m1[1], 1<<10) }()
	time.Sleep(500 * time.Millisecond) // the connection waits for the device
	startProc(t, []string{"REFLECTOR_DEVICE_SECRET=" + secret[1]}, "reflector-agent",
		"--reflector", fmt.Sprintf("https://127.0.0.1:%d", d.port), "--device", "pump-17",
		"--ports", fmt.Sprintf("%d,%d", echo1, echo2), "--fingerprint", d.fingerprint(t))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a connection across the tunnel's drop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a connection across the tunnel's drop did not finish in 30s")
	}
	fwd.stop()
	if fwd.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("forward exited %d after SIGTERM:\n%s", fwd.cmd.ProcessState.ExitCode(), fwd.output())
	}

	// remote vnc without a viewer forwards the port and says where.
	vnc := startRemoteEnv(t, env, "vnc", "pump-17", "--port", fmt.Sprint(echo2), "--viewer", "no-such-vncviewer")
	m := vnc.waitOutput(`VNC \(port \d+\) is at (127\.0\.0\.1:\d+); no no-such-vncviewer found`)
	if err := echoRoundTrip(m[1], 1<<20); err != nil {
		t.Fatalf("through remote vnc's port: %v", err)
	}
}

// startRemoteEnv is startProc for remote with env as its whole
// environment.
func startRemoteEnv(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	remoteBin(t)
	p := &proc{t: t, cmd: exec.Command(filepath.Join(binDir, "remote"), args...), done: make(chan struct{})}
	p.cmd.Env = env
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.cmd.Wait(); pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("remote output:\n%s", p.output())
		}
	})
	return p
}

// echoRoundTrip sends size random bytes to the echo service at addr while
// reading them back, half-closes, and checks that the same bytes came back
// and then EOF.
func echoRoundTrip(addr string, size int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sent, got := sha256.New(), sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.Reader, int64(size)), sent))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	n, err := io.Copy(got, c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("send: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", n, err)
	}
	if n != int64(size) || !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return fmt.Errorf("%d of %d bytes came back, equal: %v", n, size, bytes.Equal(sent.Sum(nil), got.Sum(nil)))
	}
	return nil
}
