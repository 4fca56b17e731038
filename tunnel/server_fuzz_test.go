package tunnel

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzParseInfo: parseInfo reads an agent's upgrade headers
// (X-Reflector-Ports, X-Reflector-Agent, X-Reflector-Property-<name>) and
// the connection's address. Whatever they hold it never panics, and
//   - it refuses exactly when the ports do not parse or name none, and
//     then returns nothing; otherwise its ports are ParsePorts's;
//   - the agent version and each property are their header's value cut
//     to MaxPropertyLen bytes, and only the names in PropertyNames are
//     kept (an empty header declares nothing);
//   - RemoteAddr is the socket's address verbatim when it parses, else "";
//   - the info written back as headers (FormatPorts, the properties as
//     they are) reads back the same.
func FuzzParseInfo(f *testing.F) {
	f.Add("80,22", "reflector-agent/1.0", "Pump 17", uint8(0), "192.0.2.7:40000")
	f.Add("80, 22 5900;80", "", "8080", uint8(2), "[2001:db8::1]:443")
	f.Add("", "agent", "x", uint8(1), "192.0.2.7:1")
	f.Add(" , ", "agent", "x", uint8(1), "192.0.2.7:1")
	f.Add("0", "agent", "x", uint8(1), "192.0.2.7:1")
	f.Add("65536,22", "agent", "x", uint8(1), "192.0.2.7:1")
	f.Add("22", strings.Repeat("v", MaxPropertyLen+1), strings.Repeat("é", MaxPropertyLen), uint8(8), "garbage")
	f.Add("22", "agent", "evil", uint8(200), "")
	f.Add("22", "a\r\nb", "\x00\xff", uint8(3), "[::ffff:192.0.2.7]:9")
	f.Fuzz(func(t *testing.T, ports, agent, value string, which uint8, remote string) {
		name := "notAProperty"
		if int(which) < len(PropertyNames) {
			name = PropertyNames[which]
		}
		r := httptest.NewRequest(http.MethodGet, Path, nil)
		r.RemoteAddr = remote
		r.Header = http.Header{}
		r.Header.Set(HeaderPorts, ports)
		r.Header.Set(HeaderAgent, agent)
		r.Header.Set(HeaderPropertyPrefix+name, value)
		info, err := parseInfo(r, netip.Addr{})
		want, perr := ParsePorts(ports)
		if perr != nil || len(want) == 0 {
			if err == nil {
				t.Fatalf("ports %q accepted as %v", ports, info.Ports)
			}
			if info.Ports != nil || info.Properties != nil || info.AgentVersion != "" || info.RemoteAddr != "" {
				t.Fatalf("ports %q refused (%v) but returned %+v", ports, err, info)
			}
			return
		}
		if err != nil {
			t.Fatalf("ports %q (%v) refused: %v", ports, want, err)
		}
		if !slices.Equal(info.Ports, want) || info.Kind != Subprotocol {
			t.Fatalf("ports %q: %+v, want ports %v", ports, info, want)
		}
		if info.AgentVersion != agent[:min(len(agent), MaxPropertyLen)] {
			t.Fatalf("agent %q: version %q", agent, info.AgentVersion)
		}
		wantProps := map[string]string{}
		if value != "" && name != "notAProperty" {
			wantProps[name] = value[:min(len(value), MaxPropertyLen)]
		}
		if !maps.Equal(info.Properties, wantProps) {
			t.Fatalf("property %s=%q: properties %q, want %q", name, value, info.Properties, wantProps)
		}
		if _, err := netip.ParseAddrPort(remote); err == nil && info.RemoteAddr != remote || err != nil && info.RemoteAddr != "" {
			t.Fatalf("RemoteAddr %q: %q", remote, info.RemoteAddr)
		}
		again := httptest.NewRequest(http.MethodGet, Path, nil)
		again.RemoteAddr = remote
		again.Header = http.Header{}
		again.Header.Set(HeaderPorts, FormatPorts(info.Ports))
		again.Header.Set(HeaderAgent, info.AgentVersion)
		for k, v := range info.Properties {
			again.Header.Set(HeaderPropertyPrefix+k, v)
		}
		info2, err := parseInfo(again, netip.Addr{})
		if err != nil || !slices.Equal(info2.Ports, info.Ports) || info2.AgentVersion != info.AgentVersion ||
			!maps.Equal(info2.Properties, info.Properties) || info2.RemoteAddr != info.RemoteAddr {
			t.Fatalf("%+v written back reads as %+v, %v", info, info2, err)
		}
	})
}
