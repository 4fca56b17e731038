package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// Provisioning as an administrator does it for a device in the field:
// fetch /my-devices/api/provision from a running `reflector serve` with an
// API token, hand the answer to the device's agent unchanged (but for the
// two tls.* lines a self-signed reflector needs, which the file leaves
// commented out), and the device comes online and can be reached.

// provisionStack is a running `reflector serve` with an administrator
// root and an API token of theirs, reached over TLS pinned to the
// fingerprint the reflector printed.
type provisionStack struct {
	data   string
	port   int
	token  string
	client *http.Client
}

func newProvisionStack(t *testing.T) *provisionStack {
	t.Helper()
	s := &provisionStack{data: t.TempDir(), port: freePort(t)}
	_, fp := serveProc(t, s.data, s.port)
	for _, args := range [][]string{
		{"user", "add", "root", "--admin", "--password-stdin"},
		{"token", "create", "--user", "root", "--name", "provisioning"},
	} {
		out, err := reflectorCmd(t, "root-password\n", append(args, "--data", s.data)...)
		if err != nil {
			t.Fatalf("reflector %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		s.token = tokenPattern.FindString(out)
	}
	if s.token == "" {
		t.Fatal("token create printed no token")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		// The reflector's certificate is self-signed: pin the fingerprint
		// it printed, as the README tells an administrator to check it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if got := tunnel.Fingerprint(cs.PeerCertificates[0].Raw); got != fp {
				return fmt.Errorf("certificate %s, want %s", got, fp)
			}
			return nil
		},
	}}
	t.Cleanup(tr.CloseIdleConnections)
	s.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return s
}

// do sends method path (with body as JSON unless nil) with root's token to
// the admin host and returns the answer, its body read.
func (s *provisionStack) do(t *testing.T, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", s.port, path), rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = fmt.Sprintf("localhost:%d", s.port)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// addDevice adds a device through the API, forwarding ports.
func (s *provisionStack) addDevice(t *testing.T, id string, ports ...uint16) {
	t.Helper()
	if resp, body := s.do(t, http.MethodPost, "/api/v1/devices", map[string]any{"id": id, "ports": ports}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("add device %s: %d %s", id, resp.StatusCode, body)
	}
}

// provision fetches the provisioning answer for query and checks that it
// says the secret was rotated.
func (s *provisionStack) provision(t *testing.T, query string) string {
	t.Helper()
	resp, body := s.do(t, http.MethodGet, "/my-devices/api/provision?"+query, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Reflector-Secret-Rotated") != "true" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("provision %s: %d %v\n%s", query, resp.StatusCode, resp.Header, body)
	}
	return string(body)
}

// deviceStatus is what GET /api/v1/devices/{id} says of a device's tunnel.
type deviceStatus struct {
	Online     bool              `json:"online"`
	AgentKind  string            `json:"agentKind"`
	Properties map[string]string `json:"properties"`
}

// waitOnline waits until the device is connected and returns its status.
func (s *provisionStack) waitOnline(t *testing.T, id string, output func() string) deviceStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var d struct {
			Status deviceStatus `json:"status"`
		}
		resp, body := s.do(t, http.MethodGet, "/api/v1/devices/"+id, nil)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &d) != nil {
			t.Fatalf("GET device %s: %d %s", id, resp.StatusCode, body)
		}
		if d.Status.Online {
			return d.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s not online within 20 s; its agent's output:\n%s", id, output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkEcho sends a line through a CONNECT to device's port with root's
// token as proxy password and reads it back.
func (s *provisionStack) checkEcho(t *testing.T, device string, port uint16) {
	t.Helper()
	c := connectVia(t, s.port, "root", s.token, fmt.Sprintf("%s.localhost:%d", device, port))
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through %s:%d: %q %v", device, port, buf, err)
	}
}

func TestProvisionedWebTunnelAgentConnectsAndIsReachable(t *testing.T) {
	macchinaTool(t, "WebTunnelAgent")
	s := newProvisionStack(t)
	echo := echoServer(t)
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pump") }))
	s.addDevice(t, "wt1", echo, web)

	file := s.provision(t, fmt.Sprintf("device=wt1&httpPort=%d", web))
	for _, line := range []string{"#tls.acceptUnknownCertificate = true\n", "#tls.verification = none\n"} {
		if !strings.Contains(file, line) {
			t.Fatalf("the file lacks %q:\n%s", line, file)
		}
		file = strings.Replace(file, line, line[1:], 1)
	}
	output := startWTAgent(t, file)

	st := s.waitOnline(t, "wt1", output)
	if st.AgentKind != "webtunnel" || st.Properties["httpPort"] != fmt.Sprint(web) {
		t.Errorf("status: agent kind %q, properties %v; want webtunnel with httpPort %d", st.AgentKind, st.Properties, web)
	}
	s.checkEcho(t, "wt1", echo)
}

func TestProvisionedReflectorAgentLineConnectsAsPrinted(t *testing.T) {
	s := newProvisionStack(t)
	echo := echoServer(t)
	s.addDevice(t, "dev1", echo)

	script := s.provision(t, "device=dev1&format=reflector-agent")
	if !strings.Contains(script, "reflector-agent --reflector ") {
		t.Fatalf("no agent command line in:\n%s", script)
	}
	output := runShell(t, script)

	if st := s.waitOnline(t, "dev1", output); st.AgentKind != "reflector.v1" {
		t.Errorf("agent kind %q, want reflector.v1", st.AgentKind)
	}
	s.checkEcho(t, "dev1", echo)
}

// runShell runs script with sh as an administrator would paste it, with the
// freshly built reflector-agent first on PATH, until the test ends, and
// returns its output so far, on demand.
func runShell(t *testing.T, script string) func() string {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(filepath.ListSeparator)+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the agent goes too should sh not
	// exec it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	return out.String
}
