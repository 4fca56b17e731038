package proxy

import (
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/tunnel"
)

// FuzzParseProxyAuth: parseProxyAuth never panics, refuses without
// returning anything, never accepts an empty secret, and whatever user and
// secret it returns a client can send again: a Basic header built from
// user:secret (Bearer secret for user "") parses back to the same.
func FuzzParseProxyAuth(f *testing.F) {
	for _, s := range []string{
		"Basic YWxpY2U6YWxpY2UtcHc=", // alice:alice-pw
		"basic YWxpY2U6YTpiOmM=",     // alice:a:b:c
		"Bearer rfl_0123456789abcdef",
		"BEARER   spaced token  ",
		"Basic Og==",     // ":"
		"Basic YWxpY2U=", // no colon
		"Basic !!!",
		"Basic YWxp\r\nY2U6cHc=",
		"Digest username=alice",
		"Basic",
		"",
		"Basic " + strings.Repeat("QUFB", 343),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		user, secret, ok := parseProxyAuth(h)
		if !ok {
			if user != "" || secret != "" {
				t.Fatalf("%q refused but returned %q, %q", h, user, secret)
			}
			return
		}
		if secret == "" || len(secret) > maxCredential*4/3+4 {
			t.Fatalf("%q accepted with secret %q", h, secret)
		}
		again := "Bearer " + secret
		if user != "" {
			if strings.Contains(user, ":") {
				t.Fatalf("%q accepted with user %q, which a Basic header cannot carry", h, user)
			}
			again = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
		}
		u2, s2, ok2 := parseProxyAuth(again)
		if !ok2 || u2 != user || s2 != secret {
			t.Fatalf("%q = %q, %q; sent again as %q it is %q, %q, %v", h, user, secret, again, u2, s2, ok2)
		}
	})
}

// FuzzResolveHostNamesOnlyDevices: whatever target resolveHost accepts
// names a device by a valid DNS label that is not an IP address, under the
// reflector's domain, and the device's own name (<id>.<domain>[:port])
// resolves to the same target. (FuzzResolveHost in resolve_test.go checks
// less.)
func FuzzResolveHostNamesOnlyDevices(f *testing.F) {
	for _, s := range []string{
		"pump-17.localhost:22", "PUMP-17.Localhost.:80", "pump-17", "pump-17:22",
		"pump-17.devices.example.com:443", "1.2.3.4:5", "[::1]:1", "127.1", "a:b:c",
		"x.localhost.", "localhost", ".localhost", "a.b.localhost", "0x7f000001:80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hostport string) {
		for _, domain := range []string{"localhost", "devices.example.com"} {
			got, err := resolveHost(hostport, domain)
			if err != nil {
				continue
			}
			if !tunnel.ValidDeviceID(got.device) || net.ParseIP(got.device) != nil || got.device == domain {
				t.Fatalf("resolveHost(%q, %q) = %+v: not a device", hostport, domain, got)
			}
			name := got.device + "." + domain
			if got.port != 0 {
				name = net.JoinHostPort(name, strconv.Itoa(int(got.port)))
			}
			if again, err := resolveHost(name, domain); err != nil || again != got {
				t.Fatalf("resolveHost(%q, %q) = %+v, but its name %q resolves to %+v, %v", hostport, domain, got, name, again, err)
			}
		}
	})
}
