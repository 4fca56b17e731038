package proxy

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// A stream opened with OpenStream is listed, counted, ended by Revalidate
// (its Read then fails) and audited with reason web-ssh when closed.
func TestOpenStreamIsListedCountedRevokedAndAudited(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	cred := store.Credential{User: testUsers["alice"]}
	c, err := f.p.OpenStream(context.Background(), cred, testClient, "pump-17", echo, ViaWebSSH)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
	s := oneStream(t, f.p, "pump-17")
	if s.Via != ViaWebSSH || s.User != "alice" || s.Port != echo || s.BytesUp != 5 || s.BytesDown != 5 {
		t.Errorf("stream %+v", s)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("Read after revocation succeeded")
	}
	c.Close()
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditStream || ev.Device != "pump-17" || ev.User != "alice" || ev.BytesUp != 5 ||
		!strings.HasPrefix(ev.Reason, "web-ssh") || !strings.Contains(ev.Reason, "access revoked") {
		t.Errorf("audit event %+v", ev)
	}
	if ss := f.p.Streams(""); len(ss) != 0 {
		t.Errorf("streams after close: %+v", ss)
	}
}

// OpenStream checks as every path does: unknown device, no access, a port
// not in the device's list; nothing is dialled.
func TestOpenStreamRefusesBeforeDialling(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}, Ports: []uint16{22}})
	f.setDevice(store.Device{ID: "secret-1", Groups: []string{"elsewhere"}})
	cred := store.Credential{User: testUsers["alice"]}
	for _, c := range []struct {
		device string
		port   uint16
		want   error
	}{
		{"pump-99", 22, ErrUnknownDevice},
		{"secret-1", 22, ErrNoAccess},
		{"pump-17", 80, ErrPortNotListed},
	} {
		_, err := f.p.OpenStream(context.Background(), cred, testClient, c.device, c.port, ViaWebSSH)
		if !errors.Is(err, c.want) {
			t.Errorf("%s:%d: %v, want %v", c.device, c.port, err, c.want)
		}
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials, want none", n)
	}
}
