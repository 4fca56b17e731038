package web

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The terminal's and the VNC viewer's WebSockets take exactly one Origin,
// the admin host's own (https, its host and port); anything else is a page
// they must not serve.
func TestTerminalSocketOriginMustBeExactlyTheAdminHost(t *testing.T) {
	for _, c := range []struct {
		host    string
		origins []string
		ok      bool
	}{
		{"devices.example.com:8443", []string{"https://devices.example.com:8443"}, true},
		{"devices.example.com:8443", []string{"https://DEVICES.example.com:8443"}, true},
		{"devices.example.com", []string{"https://devices.example.com:443"}, true},
		{"devices.example.com:8443", []string{"https://pump-17.devices.example.com:8443"}, false},
		{"devices.example.com:8443", []string{"http://devices.example.com:8443"}, false},
		{"devices.example.com:8443", []string{"https://devices.example.com:9443"}, false},
		{"devices.example.com:8443", []string{"https://devices.example.com"}, false},
		{"devices.example.com:8443", []string{"https://user@devices.example.com:8443"}, false},
		{"devices.example.com:8443", []string{"https://devices.example.com:8443/page"}, false},
		{"devices.example.com:8443", []string{"null"}, false},
		{"devices.example.com:8443", nil, false},
		{"devices.example.com:8443", []string{"https://devices.example.com:8443", "https://devices.example.com:8443"}, false},
	} {
		r := httptest.NewRequest("GET", "https://"+c.host+"/devices/pump-17/ssh/websocket", nil)
		for _, o := range c.origins {
			r.Header.Add("Origin", o)
		}
		if got := exactOrigin(r); got != c.ok {
			t.Errorf("host %s, Origin %q: %v, want %v", c.host, strings.Join(c.origins, ", "), got, c.ok)
		}
	}
}

// The terminal page's policy lets xterm.js's <style> elements through
// with the page's nonce and keeps script to the reflector's own.
func TestTerminalPageCSP(t *testing.T) {
	csp := styleNonceCSP("abc")
	for _, want := range []string{"script-src 'self';", "style-src-elem 'self' 'nonce-abc';", "style-src-attr 'unsafe-inline';", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Count(csp, "unsafe-inline") != 1 {
		t.Errorf("CSP %q allows more inline than style attributes", csp)
	}
}
