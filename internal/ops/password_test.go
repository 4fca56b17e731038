package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

func TestChangeOwnPasswordWithAWrongCurrentPasswordIsAFieldError(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	err := f.svc.ChangeOwnPassword(ctx, f.user(t), "not-ann-password", "new-password-1")
	var fe *store.FieldError
	if !errors.As(err, &fe) || fe.Field != "currentPassword" || !errors.Is(err, ops.ErrWrongPassword) {
		t.Errorf("err = %v, want a FieldError on currentPassword wrapping ErrWrongPassword", err)
	}
	if _, err := f.st.CheckPassword(ctx, "ann", annPassword); err != nil {
		t.Errorf("ann's password stopped working: %v", err)
	}
	if n := f.accessChanged.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times", n)
	}
}

func TestChangeOwnPasswordReplacesTheOldOne(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.svc.ChangeOwnPassword(ctx, f.user(t), annPassword, "new-password-1"); err != nil {
		t.Fatalf("ChangeOwnPassword: %v", err)
	}
	if _, err := f.st.CheckPassword(ctx, "ann", "new-password-1"); err != nil {
		t.Errorf("the new password does not work: %v", err)
	}
	if _, err := f.st.CheckPassword(ctx, "ann", annPassword); !errors.Is(err, store.ErrBadCredentials) {
		t.Errorf("the old password: err = %v, want ErrBadCredentials", err)
	}
	if n := f.accessChanged.Load(); n != 1 {
		t.Errorf("AccessChanged called %d times, want once: streams may run on the old password", n)
	}
	es := f.events(t)
	if len(es) != 1 || es[0].Kind != store.AuditUserSet || es[0].User != "ann" || es[0].Actor != "ann" || es[0].Client != userAddr.String() {
		t.Errorf("audit events = %+v, want one user.set by ann from %s", es, userAddr)
	}
}

func TestControlSocketHasNoOwnPassword(t *testing.T) {
	f := newFixture(t)
	if err := f.svc.ChangeOwnPassword(context.Background(), ops.Local(), "x", "y"); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("err = %v, want ErrForbidden", err)
	}
}

func TestAdminCannotRemoveThemselvesThroughTheAPI(t *testing.T) {
	f := newFixture(t)
	if err := f.svc.RemoveUser(context.Background(), f.admin(t), "root"); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("root removes root: err = %v, want ErrForbidden", err)
	}
	if _, err := f.st.User("root"); err != nil {
		t.Errorf("root is gone: %v", err)
	}
}
