package server

import (
	"context"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// TestOpsSpeaksForTheServer: the admin operations the server hands the
// control socket and the REST API know its address, certificate pin and
// WebTunnel domain, and audit on its store.
func TestOpsSpeaksForTheServer(t *testing.T) {
	const domain = "8f5e8a1c-6f4e-4a57-9d0c-0123456789ab"
	s := runServer(t, Config{WebTunnelDomain: domain})
	o := s.Ops()
	if got := o.ReflectorURL(); got != s.URL() {
		t.Errorf("ReflectorURL %q, want the server's %q", got, s.URL())
	}
	if line := o.AgentCommand(); !strings.Contains(line, "--fingerprint "+s.Fingerprint()) {
		t.Errorf("agent command %q lacks the certificate pin %s", line, s.Fingerprint())
	}
	added, err := o.AddDevice(context.Background(), ops.Local(), ops.NewDevice{ID: "pump-17"})
	if err != nil {
		t.Fatalf("AddDevice: %v", err)
	}
	if props := o.WebTunnelProperties(added.Device.Device, added.Secret); !strings.Contains(props, "webtunnel.domain = "+domain+"\n") {
		t.Errorf("WebTunnelAgent.properties without the server's domain:\n%s", props)
	}
	events, err := s.Store().AuditEvents(store.AuditFilter{Kind: store.AuditDeviceAdd})
	if err != nil || len(events) != 1 || events[0].Actor != ops.LocalActor {
		t.Errorf("audit of device.add: %+v, %v; want one by %q", events, err, ops.LocalActor)
	}
}
