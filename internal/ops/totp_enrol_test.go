package ops_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// codeFor is the current code of the authenticator set up from otpURL.
func codeFor(t *testing.T, otpURL string) string {
	t.Helper()
	key, err := otp.NewKeyFromURL(otpURL)
	if err != nil {
		t.Fatalf("otpauth URL %q: %v", otpURL, err)
	}
	code, err := totp.GenerateCode(key.Secret(), time.Now())
	if err != nil {
		t.Fatalf("generate code: %v", err)
	}
	return code
}

func TestUserEnrolsTOTPForThemselves(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t)

	if err := f.svc.ConfirmTOTP(ctx, ann, "ann", "123456"); !errors.Is(err, ops.ErrNoEnrolment) {
		t.Errorf("confirm with nothing pending: err = %v, want ErrNoEnrolment", err)
	}
	otpURL, err := f.svc.BeginTOTP(ctx, ann, "ann")
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	key, err := otp.NewKeyFromURL(otpURL)
	if err != nil {
		t.Fatal(err)
	}
	if key.Issuer() != "Reflector (devices.example.com)" || key.AccountName() != "ann" {
		t.Errorf("otpauth URL names issuer %q, account %q", key.Issuer(), key.AccountName())
	}
	if u, _ := f.st.User("ann"); u.TOTP {
		t.Error("TOTP on before the first code")
	}
	if err := f.svc.ConfirmTOTP(ctx, ann, "ann", "000000"); !errors.Is(err, store.ErrBadCredentials) {
		// One in a million that 000000 is the code now.
		t.Errorf("confirm with a wrong code: err = %v, want ErrBadCredentials", err)
	}
	calls := f.accessChanged.Load()
	if err := f.svc.ConfirmTOTP(ctx, ann, "ann", codeFor(t, otpURL)); err != nil {
		t.Fatalf("ConfirmTOTP with the current code: %v", err)
	}
	if u, _ := f.st.User("ann"); !u.TOTP {
		t.Error("TOTP off after confirmation")
	}
	if f.accessChanged.Load() != calls+1 {
		t.Error("enabling TOTP did not call AccessChanged: the password alone no longer opens streams")
	}

	if _, err := f.svc.BeginTOTP(ctx, ann, "ann"); !errors.Is(err, ops.ErrTOTPEnabled) {
		t.Errorf("BeginTOTP with TOTP on: err = %v, want ErrTOTPEnabled", err)
	}
	if err := f.svc.ConfirmTOTP(ctx, ann, "ann", "123456"); !errors.Is(err, ops.ErrTOTPEnabled) {
		t.Errorf("ConfirmTOTP with TOTP on: err = %v, want ErrTOTPEnabled", err)
	}

	es, err := f.svc.AuditEvents(ctx, ann, store.AuditFilter{Kind: store.AuditTOTP})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Reason != "enrolment started" || es[1].Reason != "enabled" || es[1].Actor != "ann" || es[1].Client != userAddr.String() {
		t.Errorf("TOTP audit events = %+v, want started and enabled, by ann from %s", es, userAddr)
	}
}

func TestUserCannotEnrolTOTPForAnotherUser(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t)
	if _, err := f.svc.BeginTOTP(ctx, ann, "carl"); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("ann begins TOTP for carl: err = %v, want ErrForbidden", err)
	}
	if err := f.svc.ConfirmTOTP(ctx, ann, "bob", "123456"); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("ann confirms TOTP for bob: err = %v, want ErrForbidden", err)
	}
	if _, err := f.svc.DisableTOTP(ctx, ann, "bob", "123456", false); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("ann disables bob's TOTP: err = %v, want ErrForbidden", err)
	}
	// An admin may start it for anyone.
	if _, err := f.svc.BeginTOTP(ctx, f.admin(t), "carl"); err != nil {
		t.Errorf("root begins TOTP for carl: %v", err)
	}
}

func TestForcedDisableCancelsAPendingEnrolment(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pendingOnly, err := f.svc.DisableTOTP(ctx, f.admin(t), "bob", "", true)
	if err != nil || !pendingOnly {
		t.Fatalf("force-disable bob's pending TOTP = %v, %v; want pending only", pendingOnly, err)
	}
	if err := f.svc.ConfirmTOTP(ctx, f.admin(t), "bob", "123456"); !errors.Is(err, ops.ErrNoEnrolment) {
		t.Errorf("confirm after cancelling: err = %v, want ErrNoEnrolment", err)
	}
	if _, err := f.svc.DisableTOTP(ctx, f.admin(t), "bob", "", true); !errors.Is(err, ops.ErrTOTPNotEnabled) {
		t.Errorf("force-disable with nothing left: err = %v, want ErrTOTPNotEnabled", err)
	}
}
