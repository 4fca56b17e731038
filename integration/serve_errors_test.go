package integration

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// A reflector that cannot start says why and exits; whatever it opened
// before the failure is closed again (a second try on the same data
// directory works).
func TestServeThatCannotStartSaysWhy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--listen", busy.Addr().String()}, "listen " + busy.Addr().String()},
		{"proxy port in use", []string{"--listen", "127.0.0.1:0", "--proxy-listen", busy.Addr().String()}, "listen " + busy.Addr().String()},
		{"metrics port in use", []string{"--listen", "127.0.0.1:0", "--metrics-listen", busy.Addr().String()}, "listen " + busy.Addr().String()},
		{"bad trusted proxy", []string{"--listen", "127.0.0.1:0", "--trusted-proxy", "10.0.0.0/99"}, "trusted prox"},
		{"missing device CA", []string{"--listen", "127.0.0.1:0", "--device-ca", filepath.Join(data, "nope.pem")}, "device CA"},
	} {
		out, err := reflectorCmd(t, "", append([]string{"serve", "--data", data}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "panic") {
			t.Errorf("%s: %v\n%s", tc.name, err, out)
		}
	}
	// Nothing was left open: the data directory takes a server again.
	serveProc(t, data, freePort(t))

	// And a second server on it is refused, with the reason.
	out, err := reflectorCmd(t, "", "serve", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err == nil || !strings.Contains(out, "in use") || strings.Contains(out, "panic") {
		t.Errorf("second server on one data directory: %v\n%s", err, out)
	}
}
