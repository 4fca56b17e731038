package web

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The service lines come from the agent's properties, else the record's
// ports, and name the reflector and the device as the browser reached them.
func TestDeviceServices(t *testing.T) {
	w := &Web{cfg: Config{DeviceURL: func(id string) string { return "https://" + id + ".example.com:8443/" }}}
	v := &visit{caller: ops.FromCredential(store.Credential{User: store.User{Name: "alice"}}, netip.Addr{})}
	r := httptest.NewRequest("GET", "https://example.com:8443/devices/pump-17", nil)

	online := ops.Device{Device: store.Device{ID: "pump-17"}, Online: true, Tunnel: tunnel.DeviceStatus{DeviceInfo: tunnel.DeviceInfo{
		Ports: []uint16{2222, 8000, 5901}, Properties: map[string]string{"httpPort": "8000", "sshPort": "2222", "vncPort": "5901"}}}}
	s := w.services(r, v, online)
	if s.WebURL != "https://pump-17.example.com:8443/" || s.HTTPPort != 8000 || s.SSHPort != 2222 || s.VNCPort != 5901 {
		t.Fatalf("services %+v", s)
	}
	all := ""
	for _, l := range append(s.SSH, s.Forward...) {
		all += l.Text + "\n"
	}
	for _, want := range []string{
		`remote ssh -R https://example.com:8443 --port 2222 -l USER pump-17`,
		`ssh -o ProxyCommand="remote connect -R https://example.com:8443 %h %p" -p 2222 USER@pump-17`, "remote forward -R https://example.com:8443 pump-17 2222:2222",
		`curl -x https://example.com:8443 --proxy-user alice:TOKEN http://pump-17.example.com:8000/`,
		`remote-client -t TOKEN -R 2222 -L 2222 https://pump-17.example.com:8443`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("lines lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "remote-ssh") {
		t.Error("remote-ssh offered for a port other than 22")
	}

	// Offline, the record's ports are all there is.
	offline := ops.Device{Device: store.Device{ID: "pump-18", Ports: []uint16{22, 443}, HTTPTLS: true}}
	s = w.services(r, v, offline)
	if s.SSHPort != 22 || s.HTTPPort != 443 || len(s.SSH) != 3 || s.SSH[0].Text != "remote ssh -R https://example.com:8443 -l USER pump-18" {
		t.Fatalf("offline services %+v", s)
	}
	if !strings.Contains(s.Forward[0].Text, "https://pump-18.example.com:443/") {
		t.Errorf("curl line %q", s.Forward[0].Text)
	}
	if s := w.services(r, v, ops.Device{Device: store.Device{ID: "x"}}); s.WebURL != "" || s.SSH != nil || s.Forward != nil {
		t.Errorf("a device with nothing known: %+v", s)
	}
}
