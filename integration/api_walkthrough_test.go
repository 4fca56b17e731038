package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// walkthroughScript returns the shell block of docs/api.md that follows
// the walkthrough marker.
func walkthroughScript(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- walkthrough:")
	if !ok {
		t.Fatal("docs/api.md has no walkthrough marker")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	script, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/api.md: no ```sh block after the walkthrough marker")
	}
	return script
}

// The walk-through of docs/api.md works as printed: curl alone creates a
// group, a user, a device and a token on a real `reflector serve`, starts
// the device's agent from the provisioning endpoint's command line, and
// reaches the device's web server through the proxy as the new user.
func TestAPIWalkthroughInTheDocsWorksAsPrinted(t *testing.T) {
	requireCommand(t, "curl", "curl")
	data := t.TempDir()
	port := freePort(t)
	serveProc(t, data, port)
	if out, err := reflectorCmd(t, "root-password-1\n", "user", "add", "root", "--admin", "--password-stdin", "--data", data); err != nil {
		t.Fatalf("user add root: %v\n%s", err, out)
	}

	// The device's web server.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "pump-17 says hello")
	})}
	go srv.Serve(web)
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", walkthroughScript(t))
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		fmt.Sprintf("R=https://localhost:%d", port),
		"CACERT="+filepath.Join(data, "tls-cert.pem"),
		"ADMIN_PASSWORD=root-password-1",
		fmt.Sprintf("PORT=%d", web.Addr().(*net.TCPAddr).Port),
	)
	// The script leaves the agent running in the background, as a user
	// would; its process group goes at the end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	})
	// The agent keeps the script's stdout open: once bash exits, stop
	// waiting for it.
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil || !strings.Contains(string(out), "pump-17 says hello") {
		t.Fatalf("the walk-through: %v\n%s", err, out)
	}
}
