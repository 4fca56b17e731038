package ops

import (
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"https://localhost:8443": "https://localhost:8443",
		"pump-17":                "pump-17",
		"":                       "''",
		"a b":                    "'a b'",
		"it's":                   `'it'\''s'`,
		"$(rm -rf /)":            "'$(rm -rf /)'",
	}
	for in, want := range tests {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWebTunnelDomainIsTheConfiguredOneElseTheSDKDefault(t *testing.T) {
	if got := (&Service{}).WebTunnelDomain(); got != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("default domain %q", got)
	}
	const domain = "7d3e5c0a-1b2c-4d5e-8f90-123456789abc"
	s := &Service{cfg: Config{WebTunnelDomain: domain}}
	if got := s.WebTunnelDomain(); got != domain {
		t.Errorf("domain %q, want %q", got, domain)
	}
	if !strings.Contains(s.WebTunnelProperties(store.Device{ID: "pump-17"}, "pw"), "webtunnel.domain = "+domain+"\n") {
		t.Error("the properties file does not name the configured domain")
	}
}
