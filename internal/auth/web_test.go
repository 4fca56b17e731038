package auth

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/store"
)

// enableTOTP switches TOTP on for user and returns its secret. The code of
// the current step is spent confirming it.
func (f *fixture) enableTOTP(t *testing.T, user string) string {
	t.Helper()
	raw, err := f.st.BeginTOTP(user, "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	secret := u.Query().Get("secret")
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.ConfirmTOTP(user, code); err != nil {
		t.Fatal(err)
	}
	return secret
}

// nextCode is a code the store has not accepted yet: the step after now,
// within the skew it allows.
func nextCode(t *testing.T, secret string) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestWebPasswordAcceptsATOTPUserForTheSecondStep(t *testing.T) {
	f := newFixture(t)
	secret := f.enableTOTP(t, "alice")
	u, err := f.g.Password(context.Background(), office, "alice", "alice-pass")
	if err != nil || u.Name != "alice" || !u.TOTP {
		t.Fatalf("Password = %+v, %v; want alice with TOTP", u, err)
	}
	// The proxy still refuses the password of a TOTP user.
	if _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("proxy password of a TOTP user: %v", err)
	}
	if err := f.g.TOTP(context.Background(), office, "alice", nextCode(t, secret)); err != nil {
		t.Fatalf("right code: %v", err)
	}
	var ok []store.AuditEvent
	for _, ev := range f.events(store.AuditLogin) {
		if ev.OK {
			ok = append(ok, ev)
		}
	}
	if len(ok) != 1 || ok[0].User != "alice" || ok[0].Client != office.String() || !strings.Contains(ok[0].Reason, "TOTP") {
		t.Fatalf("successful logins audited: %+v; want one, after the code", ok)
	}
}

func TestWebPasswordOfAUserWithoutTOTPIsAWholeLogin(t *testing.T) {
	f := newFixture(t)
	u, err := f.g.Password(context.Background(), office, "alice", "alice-pass")
	if err != nil || u.TOTP {
		t.Fatalf("Password = %+v, %v", u, err)
	}
	evs := f.events(store.AuditLogin)
	if len(evs) != 1 || !evs[0].OK || !strings.Contains(evs[0].Reason, "web") {
		t.Fatalf("audit: %+v", evs)
	}
	// A token is not a password here.
	if _, err := f.g.Password(context.Background(), office, "alice", f.token); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("token as web password: %v", err)
	}
}

func TestWebPasswordLockoutRefusesTheRightPasswordUnchecked(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		if _, err := f.g.Password(context.Background(), attacker, "alice", "guess-"+string(rune('a'+i))); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if _, err := f.g.Password(context.Background(), office, "alice", "alice-pass"); !isLocked(err) {
		t.Fatalf("right password while the user is locked out: %v", err)
	}
	// Proxy passwords share the budget.
	if _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); !isLocked(err) {
		t.Fatalf("proxy password while the user is locked out: %v", err)
	}
	var failed int
	for _, ev := range f.events(store.AuditLogin) {
		if ev.OK {
			t.Errorf("successful login audited during a lockout: %+v", ev)
			continue
		}
		failed++
		if ev.Client != attacker.String() || !strings.Contains(ev.Reason, "web login") || strings.Contains(ev.Reason, "guess") {
			t.Errorf("failed login event %+v", ev)
		}
	}
	if failed != 5 {
		t.Fatalf("%d failed logins audited, want 5", failed)
	}
	if n := len(f.events(store.AuditLockout)); n != 1 {
		t.Fatalf("%d lockouts audited, want 1", n)
	}
}

func TestWrongTOTPCodesLockTheUserOutAndTheRightCodeIsNotChecked(t *testing.T) {
	f := newFixture(t)
	secret := f.enableTOTP(t, "alice")
	for i := range 4 {
		if err := f.g.TOTP(context.Background(), attacker, "alice", "000000"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("wrong code %d: %v", i+1, err)
		}
	}
	// Entering the right password again does not forget the wrong codes.
	if _, err := f.g.Password(context.Background(), attacker, "alice", "alice-pass"); err != nil {
		t.Fatal(err)
	}
	if err := f.g.TOTP(context.Background(), attacker, "alice", "000001"); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("fifth wrong code: %v", err)
	}
	code := nextCode(t, secret)
	if err := f.g.TOTP(context.Background(), office, "alice", code); !isLocked(err) {
		t.Fatalf("right code while the user is locked out: %v", err)
	}
	if _, err := f.g.Password(context.Background(), office, "alice", "alice-pass"); !isLocked(err) {
		t.Fatalf("password while the user is locked out: %v", err)
	}
	// The refused code was not checked, so not spent: the store still
	// takes it.
	if err := f.st.CheckTOTP("alice", code); err != nil {
		t.Fatalf("code refused during the lockout was spent: %v", err)
	}
	var failed int
	for _, ev := range f.events(store.AuditLogin) {
		if !ev.OK {
			failed++
			if !strings.Contains(ev.Reason, "TOTP") || strings.Contains(ev.Reason, "00000") {
				t.Errorf("failed TOTP event %+v", ev)
			}
		}
	}
	if failed != 5 {
		t.Fatalf("%d failed logins audited, want 5", failed)
	}
}

func TestTOTPCodeIsAcceptedOnce(t *testing.T) {
	f := newFixture(t)
	secret := f.enableTOTP(t, "alice")
	code := nextCode(t, secret)
	if err := f.g.TOTP(context.Background(), office, "alice", code); err != nil {
		t.Fatal(err)
	}
	if err := f.g.TOTP(context.Background(), office, "alice", code); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("replayed code: %v", err)
	}
}

func TestTOTPOfAUserWithoutTOTPOrUnknownIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"alice", "nobody"} {
		if err := f.g.TOTP(context.Background(), office, name, "123456"); !errors.Is(err, store.ErrBadCredentials) {
			t.Errorf("TOTP for %s: %v", name, err)
		}
	}
}
