package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// An admin resets a device's SSH host key, audited with the admin as actor;
// a user may not, and an unknown device is not found.
func TestResetHostKeyIsAnAuditedAdminOperation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, _, err := f.st.SetHostKey("pump-1", []byte("key")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ResetHostKey(ctx, f.user(t), "pump-1"); !errors.Is(err, ops.ErrForbidden) {
		t.Fatalf("a user resets: %v, want ErrForbidden", err)
	}
	if had, err := f.svc.ResetHostKey(ctx, f.admin(t), "pump-1"); err != nil || !had {
		t.Fatalf("an admin resets: %v, %v", had, err)
	}
	if _, err := f.st.HostKey("pump-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("host key after reset: %v", err)
	}
	if had, err := f.svc.ResetHostKey(ctx, f.admin(t), "pump-1"); err != nil || had {
		t.Fatalf("reset again: %v, %v; want none kept", had, err)
	}
	if _, err := f.svc.ResetHostKey(ctx, f.admin(t), "no-such"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown device: %v, want ErrNotFound", err)
	}
	var got []string
	for _, e := range f.events(t) {
		if e.Kind == store.AuditHostKey {
			if e.Actor != "root" || e.Device != "pump-1" {
				t.Errorf("event %+v: want actor root, device pump-1", e)
			}
			got = append(got, e.Reason)
		}
	}
	if len(got) != 2 || got[0] != "reset" || got[1] != "reset: none was kept" {
		t.Fatalf("host key events: %q", got)
	}
}
