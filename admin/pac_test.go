package admin

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

func TestPACSendsDeviceSubdomainsThroughTheReflector(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.serve(request("GET", adminHost, "/proxy.pac", nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("GET /proxy.pac: %d %v", w.Code, w.Header())
	}
	pac := w.Body.String()
	if !strings.Contains(pac, `dnsDomainIs(host, ".devices.example.com")`) ||
		!strings.Contains(pac, `return "HTTPS devices.example.com:8443"`) {
		t.Fatalf("PAC:\n%s", pac)
	}
	// Port 443 is named too: a PAC HTTPS directive needs one.
	f.a.cfg.Port = ""
	pac = f.serve(request("GET", domain, "/proxy.pac", nil)).Body.String()
	if !strings.Contains(pac, `"HTTPS devices.example.com:443"`) {
		t.Fatalf("PAC on port 443:\n%s", pac)
	}
	runPAC(t, pac, map[string]string{
		"pump-1.devices.example.com":      "HTTPS devices.example.com:443",
		"PUMP-1.Devices.Example.COM.":     "HTTPS devices.example.com:443",
		"devices.example.com":             "DIRECT",
		"example.com":                     "DIRECT",
		"pump-1.devices.example.com.evil": "DIRECT",
		"xdevices.example.com":            "DIRECT",
	})
}

// runPAC evaluates the PAC file with node, when it is installed, for each
// host of want and compares the answers. dnsDomainIs is defined as the PAC
// specification (and Chromium) has it: a case-sensitive suffix match.
func runPAC(t *testing.T, pac string, want map[string]string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Log("node not installed: the PAC file is not evaluated")
		return
	}
	hosts := make([]string, 0, len(want))
	for h := range want {
		hosts = append(hosts, h)
	}
	js, _ := json.Marshal(hosts)
	script := `function dnsDomainIs(host, domain) {
	return host.length >= domain.length && host.substring(host.length - domain.length) == domain;
}
` + pac + `
const out = {};
for (const h of ` + string(js) + `) out[h] = FindProxyForURL("https://" + h + "/", h);
console.log(JSON.stringify(out));
`
	cmd := exec.Command(node, "-")
	cmd.Stdin = strings.NewReader(script)
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("node said %q: %v", raw, err)
	}
	for h, w := range want {
		if got[h] != w {
			t.Errorf("FindProxyForURL(%q) = %q, want %q", h, got[h], w)
		}
	}
}
