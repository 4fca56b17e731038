//go:build linux

package control

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Environment of TestControlSocketHelperProcess, which is this test binary
// run again as a child, possibly as another user.
const (
	helperDirEnv  = "REFLECTOR_CONTROL_HELPER_DIR"
	helperArgsEnv = "REFLECTOR_CONTROL_HELPER_ARGS"
)

// TestControlSocketHelperProcess is not a test: run as a child by
// TestControlSocketRefusesOtherUsers, it is `reflector <args> --data <dir>`.
func TestControlSocketHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), dir, strings.Fields(os.Getenv(helperArgsEnv)), nil, &out, &errb, nil)
	fmt.Printf("code=%d\nstdout=%s\nstderr=%s\n", code, out.String(), errb.String())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestControlSocketRefusesOtherUsers is the attack of issue 15, item 8: the
// control socket's only guard was its file mode, set after bind(2) created
// it, and the data directory's, which an existing directory may not have.
// Another local user who can reach the socket must still not run commands:
// the server now asks the kernel who connected (SO_PEERCRED) and lets in
// root and its own user only. The test opens both file modes on purpose,
// runs `reflector group add` as root (let in), then as nobody (refused,
// with a clear answer and a log line, and nothing changed).
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a child process as another user (uid 65534)")
	}
	base, err := os.MkdirTemp("", "reflector-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "data")
	for _, d := range []string{base, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary lives in a 0700 build directory: nobody needs a copy.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "control.test")
	copyFile(t, self, bin)

	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	ln, err := Listen(data, logger)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := os.Chmod(SocketPath(data), 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, testEnv{Store: st, Hub: tunnel.NewHub(nil)}.env(t), logger) }()
	t.Cleanup(func() {
		cancel()
		<-served
		st.Close()
	})

	run := func(cred *syscall.Credential, args string) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^TestControlSocketHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+data, helperArgsEnv+"="+args)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as %v: %v\n%s", cred, err, out)
		}
		return string(out)
	}

	if out := run(nil, "group add friends"); !strings.Contains(out, "code=0") {
		t.Fatalf("root's command refused:\n%s", out)
	}
	if _, err := st.Group("friends"); err != nil {
		t.Fatalf("root's group add did not run: %v", err)
	}

	out := run(&syscall.Credential{Uid: 65534, Gid: 65534}, "group add evil")
	if !strings.Contains(out, "code=1") || !strings.Contains(out, "refused: uid 65534") {
		t.Errorf("nobody's command was not refused with a clear answer:\n%s", out)
	}
	if _, err := st.Group("evil"); err == nil {
		t.Error("nobody's group add ran")
	}
	if l := logs.String(); !strings.Contains(l, "connection refused") || !strings.Contains(l, "uid 65534") {
		t.Errorf("no log line for the refusal:\n%s", l)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPeerAllowed(t *testing.T) {
	for _, tc := range []struct {
		uid, self uint32
		ok        bool
	}{
		{0, 0, true}, {0, 998, true}, {998, 998, true}, {1000, 998, false}, {65534, 0, false},
	} {
		if got := peerAllowed(tc.uid, tc.self); got != tc.ok {
			t.Errorf("peerAllowed(%d, %d) = %v", tc.uid, tc.self, got)
		}
	}
}

// TestPeerCredNamesTheConnectingProcess: the server reads this process's
// own uid and pid from a connection it made.
func TestPeerCredNamesTheConnectingProcess(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	c, err := net.Dial("unix", SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client's end names the server: this process too.
	uid, pid, err := peerCred(c)
	if err != nil || uid != uint32(os.Geteuid()) || pid != int32(os.Getpid()) {
		t.Fatalf("peerCred = uid %d pid %d %v; want %d %d", uid, pid, err, os.Geteuid(), os.Getpid())
	}
}

// TestListenCreatesTheSocketPrivateUnderAnyUmask: with a umask of 0 (some
// containers and units), bind(2) used to create the socket 0777 until
// Listen narrowed it; listenPrivate creates it 0600.
func TestListenCreatesTheSocketPrivateUnderAnyUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket created %v, want 0600", fi.Mode().Perm())
	}
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("umask left at %#o", now)
	}
}

// TestListenWarnsWhenTheDataDirIsOpen (issue 15, item 8): a data directory
// that already existed keeps its mode; one open to others is logged.
func TestListenWarnsWhenTheDataDirIsOpen(t *testing.T) {
	for _, mode := range []os.FileMode{0o700, 0o750, 0o755, 0o777} {
		dir := t.TempDir()
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		var logs syncBuffer
		ln, err := Listen(dir, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		warned := strings.Contains(logs.String(), "data directory is open to other users")
		if warned != (mode != 0o700) {
			t.Errorf("data directory %#o: warned %v\n%s", mode, warned, logs.String())
		}
	}
}
