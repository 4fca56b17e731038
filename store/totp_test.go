package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpT0 is the middle of a time step, so half a step either way stays in
// it.
var totpT0 = time.Date(2030, 1, 1, 0, 0, 15, 0, time.UTC)

// setTestClock makes s.now return *now; the test moves the clock by
// assigning to *now.
func setTestClock(s *Store, t0 time.Time) *time.Time {
	now := t0
	s.now = func() time.Time { return now }
	return &now
}

// totpCodeAt is the code an authenticator shows for secret at t.
func totpCodeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// enableTOTPAt adds user name with TOTP enabled by a code for *now, and
// returns the secret.
func enableTOTPAt(t *testing.T, s *Store, name string, now *time.Time) string {
	t.Helper()
	if err := s.AddUser(name, "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	url, err := s.BeginTOTP(name, "Reflector (test)")
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		t.Fatalf("otpauth URL %q: %v", url, err)
	}
	if err := s.ConfirmTOTP(name, totpCodeAt(t, key.Secret(), *now)); err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	return key.Secret()
}

func TestBeginTOTPReturnsURLForSHA1SixDigitsThirtySeconds(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	url, err := s.BeginTOTP("alice", "Reflector (reflector.example.com)")
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		t.Fatalf("otpauth URL %q: %v", url, err)
	}
	if key.Type() != "totp" || key.Issuer() != "Reflector (reflector.example.com)" || key.AccountName() != "alice" {
		t.Errorf("URL %q: type %q issuer %q account %q", url, key.Type(), key.Issuer(), key.AccountName())
	}
	if key.Algorithm() != otp.AlgorithmSHA1 || key.Digits() != otp.DigitsSix || key.Period() != 30 {
		t.Errorf("URL %q: %v, %v digits, %d s; want SHA1, 6, 30", url, key.Algorithm(), key.Digits(), key.Period())
	}
	if n := len(key.Secret()) * 5 / 8; n < 20 {
		t.Errorf("secret of %d bytes, want at least 20 (RFC 4226 §4)", n)
	}
	u, err := s.User("alice")
	if err != nil || u.TOTP {
		t.Errorf("User after BeginTOTP = %+v, %v; want TOTP off until confirmed", u, err)
	}
	if rec := rawUser(t, s, "alice"); rec.TOTPPending != key.Secret() || rec.TOTPSecret != "" {
		t.Errorf("record after BeginTOTP: pending %q enabled %q, want only pending", rec.TOTPPending, rec.TOTPSecret)
	}
}

func TestBeginTOTPWithoutIssuerUsesReflector(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	url, err := s.BeginTOTP("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if key, err := otp.NewKeyFromURL(url); err != nil || key.Issuer() != "Reflector" {
		t.Errorf("BeginTOTP(\"\") URL %q, want issuer Reflector", url)
	}
}

func TestBeginTOTPOfUnknownUserIsNotFound(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"nobody", "", strings.Repeat("x", 1000)} {
		if _, err := s.BeginTOTP(name, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("BeginTOTP(%.10q) = %v, want ErrNotFound", name, err)
		}
	}
}

// beginTOTP starts TOTP enrolment for user and returns the pending key.
func beginTOTP(t *testing.T, s *Store, user string) *otp.Key {
	t.Helper()
	url, err := s.BeginTOTP(user, "x")
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestConfirmTOTPRequiresCorrectFirstCode(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	key := beginTOTP(t, s, "alice")
	code := totpCodeAt(t, key.Secret(), *now)

	if err := s.ConfirmTOTP("alice", wrongCode(code)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("ConfirmTOTP with wrong code = %v, want ErrBadCredentials", err)
	}
	if u, _ := s.User("alice"); u.TOTP {
		t.Fatal("TOTP enabled by a wrong first code")
	}
	if err := s.ConfirmTOTP("alice", code); err != nil {
		t.Fatalf("ConfirmTOTP with right code after a wrong one: %v", err)
	}
	if u, _ := s.User("alice"); !u.TOTP {
		t.Error("User.TOTP false after ConfirmTOTP")
	}
	if rec := rawUser(t, s, "alice"); rec.TOTPSecret != key.Secret() || rec.TOTPPending != "" {
		t.Errorf("record after ConfirmTOTP: enabled %q pending %q, want the pending secret enabled", rec.TOTPSecret, rec.TOTPPending)
	}
}

// Sessions opened with the password alone end when TOTP comes on; a wrong
// first code ends none.
func TestConfirmTOTPEndsTheUsersWebSessions(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	for _, u := range []string{"alice", "bob"} {
		if err := s.AddUser(u, "pw-of-"+u, RoleUser, nil); err != nil {
			t.Fatal(err)
		}
	}
	admin, _ := mustCreateSession(t, s, "alice", "")
	device, _ := mustCreateSession(t, s, "alice", "pump-1")
	other, _ := mustCreateSession(t, s, "bob", "")
	key := beginTOTP(t, s, "alice")
	code := totpCodeAt(t, key.Secret(), *now)
	if err := s.ConfirmTOTP("alice", wrongCode(code)); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	if _, _, err := s.CheckSession(admin, ""); err != nil {
		t.Fatalf("a wrong first code ended a session: %v", err)
	}
	if err := s.ConfirmTOTP("alice", code); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CheckSession(admin, ""); err == nil {
		t.Error("alice's admin-host session survived TOTP")
	}
	if _, _, err := s.CheckSession(device, "pump-1"); err == nil {
		t.Error("alice's device session survived TOTP")
	}
	if _, _, err := s.CheckSession(other, ""); err != nil {
		t.Errorf("bob's session ended: %v", err)
	}
}

func TestConfirmTOTPWithoutPendingSecretIsNotFound(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmTOTP("alice", "123456"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConfirmTOTP without BeginTOTP = %v, want ErrNotFound", err)
	}
	if err := s.ConfirmTOTP("nobody", "123456"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConfirmTOTP of unknown user = %v, want ErrNotFound", err)
	}
}

func TestBeginTOTPWhenEnabledIsErrExists(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	if _, err := s.BeginTOTP("alice", "x"); !errors.Is(err, ErrExists) {
		t.Errorf("BeginTOTP with TOTP enabled = %v, want ErrExists", err)
	}
	if rec := rawUser(t, s, "alice"); rec.TOTPSecret != secret {
		t.Error("refused BeginTOTP changed the enabled secret")
	}
}

func TestBeginTOTPAgainReplacesPendingSecret(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	url1, _ := s.BeginTOTP("alice", "x")
	url2, _ := s.BeginTOTP("alice", "x")
	k1, _ := otp.NewKeyFromURL(url1)
	k2, _ := otp.NewKeyFromURL(url2)
	if k1.Secret() == k2.Secret() {
		t.Fatal("second BeginTOTP returned the same secret")
	}
	if err := s.ConfirmTOTP("alice", totpCodeAt(t, k1.Secret(), *now)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("code of the replaced secret = %v, want ErrBadCredentials", err)
	}
	if err := s.ConfirmTOTP("alice", totpCodeAt(t, k2.Secret(), *now)); err != nil {
		t.Errorf("code of the new secret: %v", err)
	}
}

func TestCheckTOTPAcceptsValidCodeAndRefusesWrongOne(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	code := totpCodeAt(t, secret, *now)
	if err := s.CheckTOTP("alice", wrongCode(code)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong code = %v, want ErrBadCredentials", err)
	}
	if err := s.CheckTOTP("alice", code); err != nil {
		t.Errorf("valid code = %v", err)
	}
}

// RFC 6238 §5.2: one step of skew either way is accepted, two are not.
func TestCheckTOTPAcceptsOneStepOfSkewNotTwo(t *testing.T) {
	for _, tc := range []struct {
		steps int
		ok    bool
	}{
		{-2, false}, {-1, true}, {0, true}, {1, true}, {2, false},
	} {
		t.Run(time.Duration(tc.steps*30*int(time.Second)).String(), func(t *testing.T) {
			s := newTestStore(t)
			now := setTestClock(s, totpT0)
			secret := enableTOTPAt(t, s, "alice", now)
			*now = now.Add(10 * time.Minute)
			code := totpCodeAt(t, secret, now.Add(time.Duration(tc.steps)*30*time.Second))
			err := s.CheckTOTP("alice", code)
			if tc.ok && err != nil {
				t.Errorf("code %d steps off = %v, want accepted", tc.steps, err)
			}
			if !tc.ok && !errors.Is(err, ErrBadCredentials) {
				t.Errorf("code %d steps off = %v, want ErrBadCredentials", tc.steps, err)
			}
		})
	}
}

func TestCheckTOTPRefusesReplayedCode(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	code := totpCodeAt(t, secret, *now)
	if err := s.CheckTOTP("alice", code); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := s.CheckTOTP("alice", code); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "already used") {
		t.Errorf("replay within the step = %v, want ErrBadCredentials (already used)", err)
	}
	// Still within skew of the accepted step, but no longer fresh.
	*now = now.Add(30 * time.Second)
	if err := s.CheckTOTP("alice", code); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("replay one step later = %v, want ErrBadCredentials", err)
	}
	if err := s.CheckTOTP("alice", totpCodeAt(t, secret, *now)); err != nil {
		t.Errorf("next step's code = %v, want accepted", err)
	}
}

// Once a code for the step ahead (a fast phone clock) was accepted, the
// current step's code, though within skew, is not later and is refused.
func TestCheckTOTPRefusesStepBeforeAcceptedOne(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	if err := s.CheckTOTP("alice", totpCodeAt(t, secret, now.Add(30*time.Second))); err != nil {
		t.Fatalf("code one step ahead: %v", err)
	}
	if err := s.CheckTOTP("alice", totpCodeAt(t, secret, *now)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("current step's code after the next step's = %v, want ErrBadCredentials", err)
	}
	*now = now.Add(time.Minute)
	if err := s.CheckTOTP("alice", totpCodeAt(t, secret, *now)); err != nil {
		t.Errorf("code two steps later = %v, want accepted", err)
	}
}

func TestConfirmationCodeCannotBeReplayed(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	if err := s.CheckTOTP("alice", totpCodeAt(t, secret, *now)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("code used to confirm, checked again = %v, want ErrBadCredentials", err)
	}
}

func TestCheckTOTPRefusesReplayAfterReopen(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	code := totpCodeAt(t, secret, *now)
	if err := s.CheckTOTP("alice", code); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := open(s.Dir(), time.Hour)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	now2 := setTestClock(s2, *now)
	if err := s2.CheckTOTP("alice", code); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("replay after reopen = %v, want ErrBadCredentials", err)
	}
	*now2 = now2.Add(30 * time.Second)
	if err := s2.CheckTOTP("alice", totpCodeAt(t, secret, *now2)); err != nil {
		t.Errorf("fresh code after reopen = %v", err)
	}
}

func TestCheckTOTPWithoutTOTPOrUserIsBadCredentials(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginTOTP("alice", "x"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "nobody", "", "\x00\xff"} {
		if err := s.CheckTOTP(name, "123456"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("CheckTOTP(%q) = %v, want ErrBadCredentials", name, err)
		}
	}
}

func TestCheckTOTPRefusesMalformedCodes(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	code := totpCodeAt(t, secret, *now)
	for _, bad := range []string{
		"", "12345", code + "0", " " + code, code[:3] + " " + code[3:], "abcdef", "１２３４５６",
		"\x00\x00\x00\x00\x00\x00", strings.Repeat("1", 1<<16),
	} {
		if err := s.CheckTOTP("alice", bad); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("CheckTOTP(%.20q) = %v, want ErrBadCredentials", bad, err)
		}
	}
	if err := s.CheckTOTP("alice", code); err != nil {
		t.Errorf("valid code after malformed ones = %v", err)
	}
}

// A wrong code writes nothing, so it must not cost every cached user an
// argon2id either.
func TestWrongTOTPCodeKeepsCredentialCache(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	enableTOTPAt(t, s, "alice", now)
	if err := s.AddUser("bob", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckPassword(context.Background(), "bob", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTOTP("alice", "000000"); err == nil {
		t.Skip("000000 happens to be the code")
	}
	if n := s.creds.len(); n != 1 {
		t.Errorf("cache holds %d entries after a wrong TOTP code, want 1", n)
	}
}

func TestDisableTOTPWithCode(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	secret := enableTOTPAt(t, s, "alice", now)
	*now = now.Add(time.Minute)
	code := totpCodeAt(t, secret, *now)
	if err := s.DisableTOTP("alice", wrongCode(code), false); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("DisableTOTP with wrong code = %v, want ErrBadCredentials", err)
	}
	if u, _ := s.User("alice"); !u.TOTP {
		t.Fatal("TOTP off after a refused DisableTOTP")
	}
	if err := s.DisableTOTP("alice", code, false); err != nil {
		t.Fatalf("DisableTOTP with code: %v", err)
	}
	if u, _ := s.User("alice"); u.TOTP {
		t.Error("TOTP still on after DisableTOTP")
	}
	if rec := rawUser(t, s, "alice"); rec.TOTPSecret != "" {
		t.Error("secret kept after DisableTOTP")
	}
	if err := s.DisableTOTP("alice", code, false); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("DisableTOTP without TOTP = %v, want ErrBadCredentials", err)
	}
}

func TestDisableTOTPWithForceNeedsNoCode(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	enableTOTPAt(t, s, "alice", now)
	if err := s.DisableTOTP("alice", "", true); err != nil {
		t.Fatalf("forced DisableTOTP: %v", err)
	}
	if u, _ := s.User("alice"); u.TOTP {
		t.Error("TOTP still on after forced DisableTOTP")
	}
	if err := s.DisableTOTP("alice", "", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("forced DisableTOTP without TOTP = %v, want ErrNotFound", err)
	}
	if err := s.DisableTOTP("nobody", "", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("forced DisableTOTP of unknown user = %v, want ErrNotFound", err)
	}

	// A pending secret is dropped too, so a later ConfirmTOTP has nothing
	// to switch on.
	url, err := s.BeginTOTP("alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := otp.NewKeyFromURL(url)
	if err := s.DisableTOTP("alice", "", true); err != nil {
		t.Fatalf("forced DisableTOTP of a pending secret: %v", err)
	}
	*now = now.Add(time.Minute)
	if err := s.ConfirmTOTP("alice", totpCodeAt(t, key.Secret(), *now)); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConfirmTOTP after the pending secret was dropped = %v, want ErrNotFound", err)
	}
}

// With the store's real clock, a code from an authenticator works.
func TestTOTPWithWallClock(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	url, err := s.BeginTOTP("alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := otp.NewKeyFromURL(url)
	code, err := totp.GenerateCode(key.Secret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmTOTP("alice", code); err != nil {
		t.Errorf("ConfirmTOTP with a code for now: %v", err)
	}
}

// wrongCode returns a 6-digit code different from code.
func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}
