package ops_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

func TestWebTunnelPropertiesRoundTripThroughTheAgentsReader(t *testing.T) {
	svc, err := ops.New(ops.Config{
		Store:        newFixture(t).st,
		ReflectorURL: "https://devices.example.com:8443",
		Fingerprint:  "sha256:" + strings.Repeat("ab", 32),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := store.Device{ID: "pump-1", Name: `North Pump \ Hall 2`, Ports: []uint16{22, 80}, HTTPPort: 80, HTTPTLS: true}
	secret := `s3cr\et`
	text := svc.WebTunnelProperties(d, secret)

	for _, line := range []string{
		"webtunnel.deviceId = pump-1",
		"webtunnel.reflectorURI = https://devices.example.com:8443",
		`webtunnel.password = s3cr\\et`,
		"webtunnel.ports = 22, 80",
		"webtunnel.httpPort = 80",
		"webtunnel.https.enable = true",
		`webtunnel.deviceName = North Pump \\ Hall 2`,
		// A test bench's switches, offered but off.
		"#tls.acceptUnknownCertificate = true",
		"#tls.verification = none",
	} {
		if !slices.Contains(strings.Split(text, "\n"), line) {
			t.Errorf("no line %q in\n%s", line, text)
		}
	}

	// What the agent reads back is what the record and secret say.
	path := filepath.Join(t.TempDir(), "WebTunnelAgent.properties")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := agent.LoadProperties(path, nil)
	if err != nil {
		t.Fatalf("the agent cannot read the file: %v\n%s", err, text)
	}
	want := map[string][2]any{
		"DeviceID":     {c.DeviceID, d.ID},
		"DeviceName":   {c.DeviceName, d.Name},
		"ReflectorURL": {c.ReflectorURL, "https://devices.example.com:8443"},
		"Secret":       {c.Secret, secret},
		"HTTPPort":     {c.HTTPPort, d.HTTPPort},
		"HTTPSEnable":  {c.HTTPSEnable, true},
		"Insecure":     {c.Insecure, false}, // the tls lines are comments
		"LocalAddr":    {c.LocalAddr, "127.0.0.1"},
	}
	for field, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s read back as %#v, want %#v", field, gw[0], gw[1])
		}
	}
	if !slices.Equal(c.Ports, d.Ports) {
		t.Errorf("Ports read back as %v, want %v", c.Ports, d.Ports)
	}
	// The user name is ${deviceId}@${domain}, expanded by the reader.
	props, err := agent.ParseProperties(strings.NewReader(text), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := props.Get("webtunnel.username"); u != "pump-1@00000000-0000-0000-0000-000000000000" {
		t.Errorf("webtunnel.username = %q", u)
	}
}

func TestWebTunnelPropertiesForABareRecord(t *testing.T) {
	svc, err := ops.New(ops.Config{Store: newFixture(t).st})
	if err != nil {
		t.Fatal(err)
	}
	text := svc.WebTunnelProperties(store.Device{ID: "gate-1"}, "secret")
	lines := strings.Split(text, "\n")
	for _, line := range []string{
		"webtunnel.ports = 80", // the default: a device's web UI
		"webtunnel.httpPort = 80",
		"webtunnel.reflectorURI = https://REFLECTOR-HOST:8443",
	} {
		if !slices.Contains(lines, line) {
			t.Errorf("no line %q in\n%s", line, text)
		}
	}
	for _, absent := range []string{"webtunnel.https.enable", "webtunnel.deviceName", "tls."} {
		if strings.Contains(text, absent) {
			t.Errorf("%q in a bare record's file:\n%s", absent, text)
		}
	}
}
