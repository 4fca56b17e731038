package store

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestHashPasswordIsPHCArgon2idWithOWASPParameters(t *testing.T) {
	h, err := hashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
	if !strings.HasPrefix(h, prefix) {
		t.Fatalf("hash %q does not start with %q", h, prefix)
	}
	p, err := parseArgon2id(h)
	if err != nil {
		t.Fatalf("parse own hash: %v", err)
	}
	if len(p.salt) != 16 || len(p.key) != 32 {
		t.Errorf("salt %d bytes, key %d bytes; want 16 and 32", len(p.salt), len(p.key))
	}
	if ok, err := verifyPassword(h, "correct horse"); !ok || err != nil {
		t.Errorf("verify right password = %v, %v", ok, err)
	}
	if ok, err := verifyPassword(h, "correct horsE"); ok || err != nil {
		t.Errorf("verify wrong password = %v, %v", ok, err)
	}
}

func TestHashPasswordSaltsEveryHash(t *testing.T) {
	a, _ := hashPassword("same")
	b, _ := hashPassword("same")
	if a == b {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

// Parameters come from the stored string, so hashes made with other costs
// (older settings, imported users) keep working.
func TestVerifyPasswordReadsParametersFromHash(t *testing.T) {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 64, 2, 24)
	h := encodeArgon2id(argonParams{time: 1, memory: 64, threads: 2, salt: salt, key: key})
	if !strings.Contains(h, "$m=64,t=1,p=2$") {
		t.Fatalf("encoded %q", h)
	}
	if ok, err := verifyPassword(h, "pw"); !ok || err != nil {
		t.Errorf("verify = %v, %v; want true", ok, err)
	}
	// Parameters in another order are the same hash.
	reordered := strings.Replace(h, "m=64,t=1,p=2", "p=2,t=1,m=64", 1)
	if ok, err := verifyPassword(reordered, "pw"); !ok || err != nil {
		t.Errorf("verify reordered = %v, %v; want true", ok, err)
	}
}

func TestParseArgon2idRejectsMalformed(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString(make([]byte, 16))
	key := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	good := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key
	if _, err := parseArgon2id(good); err != nil {
		t.Fatalf("good hash rejected: %v", err)
	}
	for _, tc := range []struct{ desc, hash string }{
		{"empty", ""},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuu"},
		{"version 16", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key},
		{"missing version", "$argon2id$m=19456,t=2,p=1$" + salt + "$" + key},
		{"missing p", "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key},
		{"repeated t", "$argon2id$v=19$m=19456,t=2,t=2,p=1$" + salt + "$" + key},
		{"unknown parameter", "$argon2id$v=19$m=19456,t=2,p=1,x=1$" + salt + "$" + key},
		{"t=0", "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key},
		{"p=0", "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key},
		{"p=256", "$argon2id$v=19$m=19456,t=2,p=256$" + salt + "$" + key},
		{"m too large", "$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key},
		{"t too large", "$argon2id$v=19$m=19456,t=1000,p=1$" + salt + "$" + key},
		{"negative m", "$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key},
		{"m without value", "$argon2id$v=19$m,t=2,p=1$" + salt + "$" + key},
		{"padded salt", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key},
		{"short salt", "$argon2id$v=19$m=19456,t=2,p=1$AAAA$" + key},
		{"short key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$AAAA"},
		{"bad base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$!!!!"},
		{"missing key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{"extra field", good + "$x"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if _, err := parseArgon2id(tc.hash); !errors.Is(err, errBadHash) {
				t.Errorf("parseArgon2id(%q) = %v, want errBadHash", tc.hash, err)
			}
		})
	}
}

// The hash parser reads records that may one day come from an import; it
// must never panic, and what it accepts must be safe to hand to argon2.
func FuzzParseArgon2id(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=0,t=0,p=0$$")
	f.Add("$argon2id$$$$$")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseArgon2id(s)
		if err != nil {
			return
		}
		if p.time < 1 || p.time > maxArgonTime || p.memory < 1 || p.memory > maxArgonMemory || p.threads < 1 ||
			len(p.salt) < minArgonSaltLen || len(p.key) < minArgonKeyLen || len(p.key) > maxArgonKeyLen {
			t.Errorf("accepted out-of-range parameters %+v from %q", p, s)
		}
	})
}

func TestNewSecretIs32RandomBytesURLSafe(t *testing.T) {
	a, err := newSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newSecret()
	if a == b {
		t.Error("two secrets are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Errorf("secret %q decodes to %d bytes (%v), want 32", a, len(raw), err)
	}
}

func TestVerifySecret(t *testing.T) {
	stored := hashSecret("s3cret")
	if !strings.HasPrefix(stored, "sha256:") || len(stored) != len("sha256:")+64 {
		t.Fatalf("hashSecret = %q, want sha256:<64 hex>", stored)
	}
	adopted, err := hashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc, stored, secret string
		ok, badHash          bool
	}{
		{"right secret", stored, "s3cret", true, false},
		{"wrong secret", stored, "s3creT", false, false},
		{"empty secret", stored, "", false, false},
		{"unknown scheme", "argon2id:xyz", "s3cret", false, true},
		{"no scheme", "deadbeef", "s3cret", false, true},
		{"short digest", "sha256:abcd", "s3cret", false, true},
		{"argon2id right secret", adopted, "s3cret", true, false},
		{"argon2id wrong secret", adopted, "s3creT", false, false},
		{"argon2id malformed", "$argon2id$v=19$m=0", "s3cret", false, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ok, err := verifySecret(tc.stored, tc.secret)
			if ok != tc.ok || errors.Is(err, errBadHash) != tc.badHash {
				t.Errorf("verifySecret = %v, %v; want ok=%v badHash=%v", ok, err, tc.ok, tc.badHash)
			}
			if err != nil && strings.Contains(err.Error(), tc.stored) {
				t.Errorf("error %q quotes the stored hash", err)
			}
		})
	}
}
