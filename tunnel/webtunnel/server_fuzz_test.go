package webtunnel

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/tunnel"
)

// wireName is the WebTunnel property that parseInfo keeps under our name.
var wireName = map[string]string{
	"targetHost": "targetHost", "httpPort": "httpPort", "sshPort": "sshPort", "vncPort": "vncPort",
	"rdpPort": "rdpPort", "httpsEnable": "https.enable", "deviceName": "name", "deviceVersion": "version",
}

// quote writes v as a quoted X-PTTH-Set-Property value.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// FuzzWebTunnelParseInfo: parseInfo reads a WebTunnelAgent's
// X-PTTH-Set-Property headers and User-Agent. Whatever they hold it never
// panics, and
//   - it refuses without returning anything, or returns a non-empty port
//     list without 0 or duplicates; a valid device;targetPorts=<list>
//     (and no other targetPorts) is read as ParsePorts reads <list>;
//   - it keeps only known properties, under our names (targetPorts is the
//     port list, not a property), each at most MaxPropertyLen bytes, and the
//     agent version is the User-Agent cut to MaxPropertyLen bytes;
//   - the info written back as headers (targetPorts, then each property as
//     a quoted value) reads back the same.
func FuzzWebTunnelParseInfo(f *testing.F) {
	f.Add("device;targetPorts=80, 22", `device;name="Pump \"17\""`, "WebTunnelAgent/1.0")
	f.Add("device;targetPorts=80 22;22", "device;https.enable=true", "")
	f.Add("device; targetHost = 127.0.0.1 ", "DEVICE;targetPorts=5900", "agent")
	f.Add("device;targetPorts=", "device;name=x", "agent")
	f.Add("device;targetPorts=0", "device;targetPorts=22", "agent")
	f.Add("device;targetPorts=22", "device;targetPorts=65536", "agent")
	f.Add("device;name=\"open", "device;targetPorts=22", strings.Repeat("u", tunnel.MaxPropertyLen+1))
	f.Add("other;targetPorts=22", "device;unknown=1", "agent")
	f.Add("device;targetPorts=22", `device;version="`+strings.Repeat(`\"`, tunnel.MaxPropertyLen)+`"`, "agent")
	f.Fuzz(func(t *testing.T, h1, h2, userAgent string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header = http.Header{http.CanonicalHeaderKey(HeaderProperty): {h1, h2}, "User-Agent": {userAgent}}
		info, err := parseInfo(r, netip.Addr{})
		if list, ok := strings.CutPrefix(h1, "device;targetPorts="); ok && !strings.Contains(h2, "targetPorts") && !strings.HasPrefix(list, `"`) {
			if want, perr := tunnel.ParsePorts(strings.TrimSpace(list)); perr == nil && len(want) > 0 && (err != nil || !slices.Equal(info.Ports, want)) {
				t.Fatalf("%q, %q: ports %v, %v; want %v", h1, h2, info.Ports, err, want)
			}
		}
		if err != nil {
			if info.Ports != nil || info.Properties != nil || info.AgentVersion != "" || info.Kind != "" {
				t.Fatalf("%q, %q refused (%v) but returned %+v", h1, h2, err, info)
			}
			return
		}
		if len(info.Ports) == 0 || slices.Contains(info.Ports, 0) || info.Kind != Kind {
			t.Fatalf("%q, %q: %+v", h1, h2, info)
		}
		for i, p := range info.Ports {
			if slices.Contains(info.Ports[:i], p) {
				t.Fatalf("%q, %q: port %d twice in %v", h1, h2, p, info.Ports)
			}
		}
		if info.AgentVersion != userAgent[:min(len(userAgent), tunnel.MaxPropertyLen)] {
			t.Fatalf("User-Agent %q: version %q", userAgent, info.AgentVersion)
		}
		again := http.Header{http.CanonicalHeaderKey(HeaderProperty): {"device;targetPorts=" + tunnel.FormatPorts(info.Ports)}}
		again.Set("User-Agent", info.AgentVersion)
		for name, v := range info.Properties {
			wire, ok := wireName[name]
			if !ok || len(v) > tunnel.MaxPropertyLen {
				t.Fatalf("%q, %q: property %s=%q", h1, h2, name, v)
			}
			again.Add(HeaderProperty, "device;"+wire+"="+quote(v))
		}
		r2 := httptest.NewRequest(http.MethodPost, "/", nil)
		r2.Header = again
		info2, err := parseInfo(r2, netip.Addr{})
		if err != nil || !slices.Equal(info2.Ports, info.Ports) || info2.AgentVersion != info.AgentVersion ||
			!maps.Equal(info2.Properties, info.Properties) {
			t.Fatalf("%+v written back as %q reads as %+v, %v", info, again, info2, err)
		}
	})
}
