package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
)

// credentialTestStore has alice (user, group ops, token "laptop" for
// pump-* expiring in a day) and bob (admin, token "ci"), on a test clock.
type credentialTestStore struct {
	*Store
	now        *time.Time
	aliceToken string
	aliceID    string
	bobToken   string
}

func newCredentialTestStore(t *testing.T) credentialTestStore {
	t.Helper()
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	addGroups(t, s, "ops")
	if err := s.AddUser("alice", "alice-pw", RoleUser, []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("bob", "bob-pw", RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	aliceToken, rec := mustCreateToken(t, s, Token{User: "alice", Name: "laptop", Devices: "pump-*", Expires: now.Add(24 * time.Hour)})
	bobToken, _ := mustCreateToken(t, s, Token{User: "bob", Name: "ci"})
	return credentialTestStore{Store: s, now: now, aliceToken: aliceToken, aliceID: rec.ID, bobToken: bobToken}
}

func TestAuthenticateWithPassword(t *testing.T) {
	s := newCredentialTestStore(t)
	c, err := s.Authenticate(context.Background(), "alice", "alice-pw")
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if c.User.Name != "alice" || c.User.Role != RoleUser || !slices.Equal(c.User.Groups, []string{"ops"}) || c.TokenID != "" || c.Devices != "" {
		t.Errorf("credential = %+v", c)
	}
	for _, tc := range []struct{ name, secret string }{
		{"alice", "wrong"},
		{"alice", "bob-pw"},
		{"nobody", "alice-pw"},
		{"alice", ""},
	} {
		if c, err := s.Authenticate(context.Background(), tc.name, tc.secret); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Authenticate(%q, %q) = %+v, %v; want ErrBadCredentials", tc.name, tc.secret, c, err)
		}
	}
}

func TestAuthenticateWithToken(t *testing.T) {
	s := newCredentialTestStore(t)
	c, err := s.Authenticate(context.Background(), "alice", s.aliceToken)
	if err != nil {
		t.Fatalf("Authenticate with token: %v", err)
	}
	if c.User.Name != "alice" || c.User.Role != RoleUser || !slices.Equal(c.User.Groups, []string{"ops"}) || c.TokenID != s.aliceID || c.Devices != "pump-*" {
		t.Errorf("credential = %+v", c)
	}
	c2, err := s.AuthenticateToken(s.aliceToken)
	if err != nil {
		t.Fatalf("AuthenticateToken: %v", err)
	}
	if c2.User.Name != c.User.Name || c2.TokenID != c.TokenID || c2.Devices != c.Devices {
		t.Errorf("AuthenticateToken = %+v, want %+v", c2, c)
	}
}

// The token's credential carries the user's role and groups as they are
// now, not as they were when the token was made.
func TestTokenCredentialHasCurrentRoleAndGroups(t *testing.T) {
	s := newCredentialTestStore(t)
	addGroups(t, s.Store, "plant-a")
	if err := s.SetUserGroups("alice", []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserRole("alice", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	c, err := s.AuthenticateToken(s.aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.User.Role != RoleAdmin || !slices.Equal(c.User.Groups, []string{"plant-a"}) {
		t.Errorf("credential user = %+v, want admin in plant-a", c.User)
	}
}

func TestAuthenticateRefusesBadTokens(t *testing.T) {
	s := newCredentialTestStore(t)
	body, _ := base64.RawURLEncoding.DecodeString(s.aliceToken[len(TokenPrefix):])
	body[len(body)-1] ^= 1
	wrongSecret := TokenPrefix + base64.RawURLEncoding.EncodeToString(body)
	unknownID := make([]byte, 24)
	rand.Read(unknownID)

	for _, tc := range []struct {
		desc, name, token, reason string
	}{
		{"wrong secret", "alice", wrongSecret, "wrong secret"},
		{"unknown id", "alice", TokenPrefix + base64.RawURLEncoding.EncodeToString(unknownID), "unknown token"},
		{"another user's", "alice", s.bobToken, "another user"},
		{"for another user", "bob", s.aliceToken, "another user"},
		{"name in other case", "Alice", s.aliceToken, "another user"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := s.Authenticate(context.Background(), tc.name, tc.token)
			if !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("Authenticate = %+v, %v; want ErrBadCredentials", c, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not give the reason %q", err, tc.reason)
			}
			assertNoSecretIn(t, err, tc.token)
		})
	}
	if _, err := s.AuthenticateToken(wrongSecret); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("AuthenticateToken(wrong secret) = %v, want ErrBadCredentials", err)
	}
}

func TestAuthenticateRefusesExpiredToken(t *testing.T) {
	s := newCredentialTestStore(t)
	*s.now = s.now.Add(24*time.Hour - time.Second)
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); err != nil {
		t.Fatalf("token a second before expiry: %v", err)
	}
	*s.now = s.now.Add(time.Second)
	for _, auth := range []func() (Credential, error){
		func() (Credential, error) { return s.Authenticate(context.Background(), "alice", s.aliceToken) },
		func() (Credential, error) { return s.AuthenticateToken(s.aliceToken) },
	} {
		_, err := auth()
		if !errors.Is(err, ErrBadCredentials) || !errors.Is(err, ErrExpired) {
			t.Errorf("expired token = %v, want ErrBadCredentials and ErrExpired", err)
		}
		assertNoSecretIn(t, err, s.aliceToken)
	}
}

func TestAuthenticateRefusesRevokedToken(t *testing.T) {
	s := newCredentialTestStore(t)
	if _, err := s.RevokeToken(s.aliceID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(context.Background(), "alice", s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Authenticate with revoked token = %v, want ErrBadCredentials", err)
	}
	if _, err := s.AuthenticateToken(s.aliceToken); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("AuthenticateToken with revoked token = %v, want ErrBadCredentials", err)
	}
}

// Proxy passwords and bearer headers are attacker-controlled bytes: any of
// them is refused with ErrBadCredentials, never a panic, and the error does
// not repeat them.
func TestAuthenticateRefusesGarbage(t *testing.T) {
	s := newCredentialTestStore(t)
	valid := s.aliceToken
	for _, tc := range []struct{ desc, name, secret string }{
		{"empty", "alice", ""},
		{"prefix only", "alice", TokenPrefix},
		{"wrong prefix", "alice", "rfe_" + valid[4:]},
		{"upper-case prefix", "alice", "RFL_" + valid[4:]},
		{"one character short", "alice", valid[:len(valid)-1]},
		{"one character long", "alice", valid + "A"},
		{"standard base64", "alice", TokenPrefix + strings.Repeat("+/", 16)},
		{"padding", "alice", TokenPrefix + strings.Repeat("A", 30) + "=="},
		{"not base64", "alice", TokenPrefix + strings.Repeat("!", 32)},
		{"binary", "alice", TokenPrefix + strings.Repeat("\x00\xff", 16)},
		{"over-long", "alice", TokenPrefix + strings.Repeat("A", 1<<20)},
		{"binary name", "\x00\xffalice", valid},
		{"over-long name", strings.Repeat("a", 1<<16), valid},
		{"empty name", "", valid},
		{"name with colon", "alice:x", valid},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := s.Authenticate(context.Background(), tc.name, tc.secret)
			if !errors.Is(err, ErrBadCredentials) {
				t.Errorf("Authenticate = %+v, %v; want ErrBadCredentials", c, err)
			}
			assertNoSecretIn(t, err, tc.secret)
			if tc.name == "alice" {
				c, err := s.AuthenticateToken(tc.secret)
				if !errors.Is(err, ErrBadCredentials) {
					t.Errorf("AuthenticateToken = %+v, %v; want ErrBadCredentials", c, err)
				}
				assertNoSecretIn(t, err, tc.secret)
			}
		})
	}
	if _, err := s.AuthenticateToken("alice-pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("AuthenticateToken(password) = %v, want ErrBadCredentials", err)
	}
}

func TestAuthenticateRefusesPasswordOfTOTPUserButAcceptsToken(t *testing.T) {
	s := newCredentialTestStore(t)
	if _, err := s.Authenticate(context.Background(), "alice", "alice-pw"); err != nil {
		t.Fatal(err) // also fills the credential cache
	}
	url, err := s.BeginTOTP("alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	// Not enabled before the first code.
	if _, err := s.Authenticate(context.Background(), "alice", "alice-pw"); err != nil {
		t.Errorf("password with TOTP pending = %v, want accepted", err)
	}
	secret := totpSecretOf(t, url)
	if err := s.ConfirmTOTP("alice", totpCodeAt(t, secret, *s.now)); err != nil {
		t.Fatal(err)
	}

	_, err = s.Authenticate(context.Background(), "alice", "alice-pw")
	if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "password not accepted for a user with TOTP") {
		t.Errorf("password of TOTP user = %v, want ErrBadCredentials saying why", err)
	}
	assertNoSecretIn(t, err, "alice-pw")
	c, err := s.Authenticate(context.Background(), "alice", s.aliceToken)
	if err != nil {
		t.Fatalf("token of TOTP user = %v, want accepted", err)
	}
	if !c.User.TOTP {
		t.Errorf("credential user %+v, want TOTP set", c.User)
	}
}

func TestCredentialAllows(t *testing.T) {
	alice := User{Name: "alice", Role: RoleUser, Groups: []string{"ops"}}
	admin := User{Name: "bob", Role: RoleAdmin}
	pump := Device{ID: "pump-1", Groups: []string{"ops"}}
	valve := Device{ID: "valve-1", Groups: []string{"ops"}}
	other := Device{ID: "pump-2", Groups: []string{"plant-b"}}
	for _, tc := range []struct {
		desc string
		c    Credential
		d    Device
		want bool
	}{
		{"password, shared group", Credential{User: alice}, pump, true},
		{"password, no shared group", Credential{User: alice}, other, false},
		{"token without pattern", Credential{User: alice, TokenID: "x"}, valve, true},
		{"pattern matches", Credential{User: alice, TokenID: "x", Devices: "pump-*"}, pump, true},
		{"pattern does not match", Credential{User: alice, TokenID: "x", Devices: "pump-*"}, valve, false},
		{"pattern matches, no shared group", Credential{User: alice, TokenID: "x", Devices: "pump-*"}, other, false},
		{"admin, pattern matches", Credential{User: admin, TokenID: "x", Devices: "pump-?"}, other, true},
		{"admin, pattern does not match", Credential{User: admin, TokenID: "x", Devices: "pump-?"}, valve, false},
		{"exact pattern", Credential{User: admin, TokenID: "x", Devices: "valve-1"}, valve, true},
		{"malformed pattern", Credential{User: admin, TokenID: "x", Devices: "["}, valve, false},
		{"zero credential", Credential{}, pump, false},
	} {
		if got := tc.c.Allows(tc.d); got != tc.want {
			t.Errorf("%s: Allows = %v, want %v", tc.desc, got, tc.want)
		}
	}
}

func TestCredentialValid(t *testing.T) {
	s := newCredentialTestStore(t)
	pw, err := s.Authenticate(context.Background(), "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Authenticate(context.Background(), "alice", s.aliceToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Credential{pw, tok} {
		if got, ok := s.CredentialValid(c); !ok || got.User.Name != "alice" || got.TokenID != c.TokenID || got.Devices != c.Devices {
			t.Errorf("CredentialValid(%+v) = %+v, %v; want unchanged and valid", c, got, ok)
		}
	}

	// Changes of role and groups show in the refreshed credential; the
	// caller re-runs Allows with it.
	if err := s.SetUserGroups("alice", nil); err != nil {
		t.Fatal(err)
	}
	pump := Device{ID: "pump-1", Groups: []string{"ops"}}
	got, ok := s.CredentialValid(tok)
	if !ok || len(got.User.Groups) != 0 || got.Allows(pump) {
		t.Errorf("after leaving ops: CredentialValid = %+v, %v; want valid, no groups, not allowed", got, ok)
	}

	if _, err := s.RevokeToken(s.aliceID); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.CredentialValid(tok); ok || got.Allows(pump) {
		t.Errorf("revoked token: CredentialValid = %+v, %v; want invalid", got, ok)
	}
	if _, ok := s.CredentialValid(pw); !ok {
		t.Error("password credential invalid after an unrelated token was revoked")
	}
}

func TestCredentialValidAfterExpiryTOTPAndRemoval(t *testing.T) {
	s := newCredentialTestStore(t)
	pw, _ := s.Authenticate(context.Background(), "alice", "alice-pw")
	tok, err := s.Authenticate(context.Background(), "alice", s.aliceToken)
	if err != nil {
		t.Fatal(err)
	}

	url, err := s.BeginTOTP("alice", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfirmTOTP("alice", totpCodeAt(t, totpSecretOf(t, url), *s.now)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.CredentialValid(pw); ok {
		t.Error("password credential still valid after TOTP was enabled")
	}
	if got, ok := s.CredentialValid(tok); !ok || !got.User.TOTP {
		t.Errorf("token credential after TOTP enabled = %+v, %v; want valid", got, ok)
	}

	*s.now = s.now.Add(24 * time.Hour)
	if _, ok := s.CredentialValid(tok); ok {
		t.Error("token credential still valid after expiry")
	}

	bob, err := s.Authenticate(context.Background(), "bob", s.bobToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser("bob"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.CredentialValid(bob); ok {
		t.Error("credential of a removed user still valid")
	}
	if _, ok := s.CredentialValid(Credential{User: User{Name: "alice"}, TokenID: s.aliceID + "x"}); ok {
		t.Error("credential with an unknown token id valid")
	}
	if _, ok := s.CredentialValid(Credential{}); ok {
		t.Error("zero credential valid")
	}
}

// A token moved to another user's credential is not valid for them.
func TestCredentialValidRefusesTokenOfAnotherUser(t *testing.T) {
	s := newCredentialTestStore(t)
	c, err := s.Authenticate(context.Background(), "bob", s.bobToken)
	if err != nil {
		t.Fatal(err)
	}
	c.User.Name = "alice"
	if _, ok := s.CredentialValid(c); ok {
		t.Error("bob's token valid in a credential for alice")
	}
}

// totpSecretOf returns the secret of an otpauth URL.
func totpSecretOf(t *testing.T, url string) string {
	t.Helper()
	key, err := otp.NewKeyFromURL(url)
	if err != nil {
		t.Fatalf("otpauth URL %q: %v", url, err)
	}
	return key.Secret()
}

// assertNoSecretIn fails if err's message contains secret, or the secret
// part of a token-shaped secret.
func assertNoSecretIn(t *testing.T, err error, secret string) {
	t.Helper()
	if err == nil || secret == "" {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, secret) || LooksLikeToken(secret) && strings.Contains(msg, secret[len(secret)-16:]) {
		t.Errorf("error %.200q contains the secret", msg)
	}
}

func TestCredentialValidFollowsTheWebSession(t *testing.T) {
	s := newTestStore(t)
	now := time.Now()
	enableTOTPAt(t, s, "alice", &now)
	token, sess, err := s.CreateSession("alice", "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	cred := Credential{User: User{Name: "alice"}, SessionID: sess.ID}
	// A session credential is not a password: TOTP does not void it.
	if _, ok := s.CredentialValid(cred); !ok {
		t.Fatal("live session refused")
	}
	if err := s.DeleteSession(token); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.CredentialValid(cred); ok {
		t.Fatal("ended session still valid")
	}
}
