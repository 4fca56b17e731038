package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestRotatingASecretDropsTheConnectedAgentAndTheOldSecret(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p, err := f.svc.RotateDeviceSecret(ctx, f.admin(t), "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.WasOnline || !f.pump1.closed.Load() {
		t.Errorf("WasOnline %v, tunnel closed %v; want both", p.WasOnline, f.pump1.closed.Load())
	}
	if _, err := f.st.CheckDeviceSecret(ctx, "pump-1", f.secrets["pump-1"]); !errors.Is(err, store.ErrBadCredentials) {
		t.Errorf("the old secret: err = %v, want ErrBadCredentials", err)
	}
	if _, err := f.st.CheckDeviceSecret(ctx, "pump-1", p.Secret); err != nil {
		t.Errorf("the new secret: %v", err)
	}
}

func TestDisablingAConnectedDeviceClosesItsTunnel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	closed, err := f.svc.SetDeviceDisabled(ctx, f.admin(t), "pump-1", true)
	if err != nil || !closed || !f.pump1.closed.Load() {
		t.Errorf("disable pump-1 = %v, %v; tunnel closed %v", closed, err, f.pump1.closed.Load())
	}
	// Enabling gives nothing back that was taken: no re-check.
	calls := f.accessChanged.Load()
	if _, err := f.svc.SetDeviceDisabled(ctx, f.admin(t), "pump-1", false); err != nil {
		t.Fatal(err)
	}
	if f.accessChanged.Load() != calls {
		t.Error("enabling a device called AccessChanged")
	}
}

func TestUpdateDeviceDescribesTheChange(t *testing.T) {
	f := newFixture(t)
	groups, port := []string{"plant-b"}, uint16(8080)
	_, desc, err := f.svc.UpdateDevice(context.Background(), f.admin(t), "valve-1",
		store.DeviceUpdate{Groups: &groups, HTTPPort: &port})
	if err != nil {
		t.Fatal(err)
	}
	if want := "groups plant-b, HTTP port 8080"; desc != want {
		t.Errorf("description %q, want %q", desc, want)
	}
	es := f.events(t)
	if len(es) != 1 || es[0].Reason != desc {
		t.Errorf("audit events = %+v, want one with the description", es)
	}
}
