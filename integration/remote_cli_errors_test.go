package integration

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRemoteCLIErrorsNameTheCause runs remote connect into each refusal a
// user meets: one line on stderr that names the cause, exit code 1.
func TestRemoteCLIErrorsNameTheCause(t *testing.T) {
	echo := echoServer(t)
	d := deploy(t, fmt.Sprint(echo))
	for _, args := range [][]string{
		{"device", "add", "pump-18", "--group", "plant", "--ports", "22"},
		{"group", "add", "elsewhere"},
		{"device", "add", "vault", "--group", "elsewhere", "--ports", "22"},
	} {
		if out, err := reflectorCmd(t, "", append(args, "--data", d.data)...); err != nil {
			t.Fatalf("%s: %v\n%s", args, err, out)
		}
	}
	closed := fmt.Sprint(closedPort(t))
	for _, tc := range []struct {
		name   string
		env    []string
		device string
		port   string
		want   []string
	}{
		{"device offline", d.tokenEnv(t), "pump-18", "22", []string{"pump-18 port 22", "offline", "502"}},
		{"no access", d.tokenEnv(t), "vault", "22", []string{"vault port 22", "no access", "403"}},
		{"port not allowed", d.tokenEnv(t), "pump-17", "9", []string{"pump-17 port 9", "port not allowed", "403"}},
		{"unknown device", d.tokenEnv(t), "nosuch", "22", []string{"nosuch", "unknown device", "404"}},
		{"bad token", d.tokenEnv(t, "REMOTE_TOKEN=rfl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "pump-17", fmt.Sprint(echo),
			[]string{"refused the credentials", "407", "remote login"}},
		{"reflector unreachable", d.tokenEnv(t, "REMOTE_URL=https://localhost:"+closed), "pump-17", fmt.Sprint(echo),
			[]string{"cannot reach the reflector at localhost:" + closed, "refused"}},
		{"not logged in", remoteEnv(t), "pump-17", "22", []string{"not logged in", "remote login"}},
		{"unknown certificate", remoteEnv(t, "REMOTE_URL="+d.url(), "REMOTE_TOKEN="+d.token), "pump-17", "22",
			[]string{"signed by no known authority", d.fingerprint(t), "--fingerprint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runRemote(t, tc.env, "", "connect", tc.device, tc.port)
			line := strings.TrimSpace(errOut)
			t.Log(line)
			if code != 1 || out != "" || strings.Contains(line, "\n") || !strings.HasPrefix(line, "remote: ") {
				t.Fatalf("exit %d, stdout %q, stderr (want one line):\n%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%q lacks %q", line, w)
				}
			}
		})
	}
}

// TestRemoteCLIReachesTheReflectorThroughHTTPSProxy puts a corporate proxy
// (CONNECT with Basic credentials) between remote and a reflector whose
// name only the proxy can resolve: with HTTPS_PROXY set, devices and
// connect work, and both went through the proxy.
func TestRemoteCLIReachesTheReflectorThroughHTTPSProxy(t *testing.T) {
	echo := echoServer(t)
	d := deploy(t, fmt.Sprint(echo))
	var tunnels atomic.Int64
	reflectorName := fmt.Sprintf("reflector.invalid:%d", d.port)
	proxyPort := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("corp:corp-pass"))
		switch {
		case r.Method != http.MethodConnect:
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		case r.Header.Get("Proxy-Authorization") != want:
			w.Header().Set("Proxy-Authenticate", `Basic realm="corp"`)
			http.Error(w, "corporate proxy: credentials", http.StatusProxyAuthRequired)
			return
		case r.Host != reflectorName:
			http.Error(w, "corporate proxy: not allowed", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.port))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		tunnels.Add(1)
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, brw.Reader); up.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, up)
	}))
	env := remoteEnv(t, "REMOTE_URL=https://"+reflectorName, "REMOTE_USER=alice", "REMOTE_TOKEN="+d.token,
		"REMOTE_FINGERPRINT="+d.fingerprint(t), fmt.Sprintf("HTTPS_PROXY=http://corp:corp-pass@127.0.0.1:%d", proxyPort))
	out, errOut, code := runRemote(t, env, "ping", "connect", "pump-17", fmt.Sprint(echo))
	if code != 0 || out != "ping" {
		t.Fatalf("connect through the proxy: exit %d %q\n%s", code, out, errOut)
	}
	out, errOut, code = runRemote(t, env, "", "devices")
	if code != 0 || !strings.Contains(out, "pump-17") {
		t.Fatalf("devices through the proxy: exit %d\n%s%s", code, out, errOut)
	}
	if n := tunnels.Load(); n < 2 {
		t.Fatalf("%d connections went through the proxy, want 2 or more", n)
	}
	// Wrong proxy credentials: the proxy's refusal, named.
	bad := append(env, fmt.Sprintf("HTTPS_PROXY=http://corp:wrong@127.0.0.1:%d", proxyPort))
	_, errOut, code = runRemote(t, bad, "", "connect", "pump-17", fmt.Sprint(echo))
	if code != 1 || !strings.Contains(errOut, "refused CONNECT") || !strings.Contains(errOut, "407") {
		t.Fatalf("wrong proxy credentials: exit %d\n%s", code, errOut)
	}
}

// TestRemoteCLITakesFlagsAndMacchinaHabits reaches the device's echo port
// with the credentials in each form remote takes: flags (-R, -u, -t,
// --ca-file, --fingerprint), macchina.io's REMOTE_USERNAME and
// REMOTE_PASSWORD (a password as the proxy password), a token without a
// user (Bearer), and the device as user@device, device.<domain> and
// device:port.
func TestRemoteCLITakesFlagsAndMacchinaHabits(t *testing.T) {
	echo := fmt.Sprint(echoServer(t))
	d := deploy(t, echo)
	ca := filepath.Join(d.data, "tls-cert.pem")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flags", remoteEnv(t), []string{"connect", "-R", d.url(), "-u", "alice", "-t", d.token, "--ca-file", ca, "pump-17", echo}},
		{"flags after", remoteEnv(t), []string{"connect", "pump-17", echo, "--url", d.url(), "--token", d.token, "--fingerprint", d.fingerprint(t)}},
		{"macchina variables", remoteEnv(t, "REMOTE_URL="+d.url(), "REMOTE_USERNAME=alice", "REMOTE_PASSWORD=alice-pass", "REMOTE_CA_FILE="+ca),
			[]string{"connect", "pump-17", echo}},
		{"bearer", remoteEnv(t, "REMOTE_URL="+d.url(), "REMOTE_TOKEN="+d.token, "REMOTE_CA_FILE="+ca), []string{"connect", "pump-17", echo}},
		{"user@device", d.tokenEnv(t), []string{"connect", "pi@pump-17", echo}},
		{"device.domain:port", d.tokenEnv(t), []string{"connect", "pump-17.localhost:" + echo}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runRemote(t, tc.env, "ping", tc.args...)
			if code != 0 || out != "ping" {
				t.Fatalf("remote %s: exit %d %q\n%s", strings.Join(tc.args, " "), code, out, errOut)
			}
		})
	}
}
