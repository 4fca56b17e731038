package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A reflector behind a port mapping (443 outside, a high port here) must
// send browsers and agents to the port they can reach: redirects, the PAC
// file and the printed agent line name --public-port, not the listener's.
func TestPublicPortGoesIntoRedirectsPACAndAgentLines(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	serveProc(t, data, port, "--public-port", "443")

	if out, err := reflectorCmd(t, "", "group", "add", "plant", "--data", data); err != nil {
		t.Fatalf("group add: %v\n%s", err, out)
	}
	out, err := reflectorCmd(t, "", "device", "add", "dev1", "--group", "plant", "--data", data)
	if err != nil || !strings.Contains(out, "reflector-agent --reflector https://localhost ") {
		t.Fatalf("device add: %v; want an agent line for https://localhost\n%s", err, out)
	}

	// The mapping itself, as the client sees it: every name to our listener.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(u string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	resp, _ := get("https://dev1.localhost/")
	if want := "https://localhost/auth/handoff?device=dev1&next=%2F"; resp.StatusCode != http.StatusSeeOther || withoutState(resp.Header.Get("Location")) != want {
		t.Errorf("device page without a session: %d Location %q, want 303 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, body := get("https://localhost/proxy.pac")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"HTTPS localhost:443"`) {
		t.Errorf("PAC file: %d\n%s", resp.StatusCode, body)
	}
}

func TestServeRefusesABadPublicPort(t *testing.T) {
	for _, bad := range []string{"0", "https", "70000"} {
		out, err := reflectorCmd(t, "", "serve", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--public-port", bad)
		if err == nil || !strings.Contains(out, "public port") {
			t.Errorf("--public-port %s: %v\n%s", bad, err, out)
		}
	}
}
