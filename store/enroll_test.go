package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// newEnrollStore is a store with the group plant-a and a manual clock.
func newEnrollStore(t *testing.T) (*Store, *manualClock) {
	t.Helper()
	s := newTestStore(t)
	clock := setClock(s, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	addGroups(t, s, "plant-a")
	return s, clock
}

func createEnrollKey(t *testing.T, s *Store, k EnrollKey) (string, EnrollKey) {
	t.Helper()
	key, rec, err := s.CreateEnrollKey(k)
	if err != nil {
		t.Fatalf("CreateEnrollKey(%+v): %v", k, err)
	}
	return key, rec
}

func TestEnrollKeyHasPrefixAndPublicID(t *testing.T) {
	s, clock := newEnrollStore(t)
	expires := clock.now().Add(24 * time.Hour)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Max: 3, Expires: expires, Uses: 9, ID: "ffffffffffffffff"})

	if !strings.HasPrefix(key, EnrollKeyPrefix) || len(key) != 36 {
		t.Fatalf("key %q: want %q and 32 characters", key, EnrollKeyPrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(key[len(EnrollKeyPrefix):])
	if err != nil || len(raw) != 24 {
		t.Fatalf("key body decodes to %d bytes, %v; want 24", len(raw), err)
	}
	want := EnrollKey{
		ID:      hex.EncodeToString(raw[:8]),
		Group:   "plant-a",
		Max:     3,
		Created: clock.now(),
		Expires: expires,
	}
	if rec != want {
		t.Errorf("record = %+v, want %+v", rec, want)
	}
	keys, err := s.EnrollKeys()
	if err != nil || len(keys) != 1 || keys[0] != want {
		t.Errorf("EnrollKeys() = %+v, %v; want [%+v]", keys, err, want)
	}
	if other, _ := createEnrollKey(t, s, EnrollKey{Group: "plant-a"}); other == key {
		t.Error("two keys are the same")
	}
}

func TestEnrollKeySecretNotStored(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addGroups(t, s, "plant-a")
	key, rec, err := s.CreateEnrollKey(EnrollKey{Group: "plant-a"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(key[len(EnrollKeyPrefix):])
	secret := raw[8:]
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEnroll).Get([]byte(rec.ID))
		if v == nil {
			t.Fatalf("no record under %s", rec.ID)
		}
		if !bytes.Contains(v, []byte(hashSecret(string(secret)))) {
			t.Errorf("record %s lacks the secret's hash", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, dbFileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte(key)) || bytes.Contains(file, secret) ||
		bytes.Contains(file, []byte(key[len(EnrollKeyPrefix):])) {
		t.Error("database file contains the enrolment key or its secret")
	}
}

func TestCreateEnrollKeyRejectsBadInput(t *testing.T) {
	s, clock := newEnrollStore(t)
	for _, tc := range []struct {
		desc string
		k    EnrollKey
		want error
	}{
		{"missing group", EnrollKey{Group: "plant-z"}, ErrNotFound},
		{"empty group", EnrollKey{}, ErrInvalid},
		{"invalid group", EnrollKey{Group: "a b"}, ErrInvalid},
		{"negative max", EnrollKey{Group: "plant-a", Max: -1}, ErrInvalid},
		{"expires now", EnrollKey{Group: "plant-a", Expires: clock.now()}, ErrInvalid},
		{"expired", EnrollKey{Group: "plant-a", Expires: clock.now().Add(-time.Hour)}, ErrInvalid},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if key, _, err := s.CreateEnrollKey(tc.k); !errors.Is(err, tc.want) || key != "" {
				t.Errorf("CreateEnrollKey = %q, %v; want no key and %v", key, err, tc.want)
			}
		})
	}
	if keys, _ := s.EnrollKeys(); len(keys) != 0 {
		t.Errorf("%d keys stored, want none", len(keys))
	}
}

func TestEnrollCreatesDeviceInKeyGroup(t *testing.T) {
	s, clock := newEnrollStore(t)
	addGroups(t, s, "plant-b")
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	createEnrollKey(t, s, EnrollKey{Group: "plant-b"}) // not used

	d, secret, err := s.Enroll(key, "pump-17")
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	want := Device{ID: "pump-17", Groups: []string{"plant-a"}, Created: clock.now()}
	assertDeviceEqual(t, d, want)
	got, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret)
	if err != nil {
		t.Fatalf("CheckDeviceSecret of the enrolled device: %v", err)
	}
	assertDeviceEqual(t, got, want)
	if len(secret) != 43 {
		t.Errorf("device secret has %d characters, want 43 like AddDevice's", len(secret))
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 1 {
		t.Errorf("Uses = %d after one enrolment, want 1", k.Uses)
	}
}

func TestEnrollKeyWorksUpToMaxThenErrQuota(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Max: 3})
	for i := range 3 {
		if _, _, err := s.Enroll(key, fmt.Sprint("pump-", i)); err != nil {
			t.Fatalf("Enroll %d of 3: %v", i+1, err)
		}
	}
	_, _, err := s.Enroll(key, "pump-3")
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("Enroll past Max = %v, want ErrQuota", err)
	}
	if !strings.Contains(err.Error(), rec.ID) || strings.Contains(err.Error(), key) {
		t.Errorf("error %q should name the key id and not hold the key", err)
	}
	if _, err := s.Device("pump-3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("device refused by the key's quota was stored: %v", err)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 3 {
		t.Errorf("Uses = %d, want 3", k.Uses)
	}
}

func TestEnrollKeyWithoutMaxHasNoLimit(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	for i := range 10 {
		if _, _, err := s.Enroll(key, fmt.Sprint("pump-", i)); err != nil {
			t.Fatalf("Enroll %d: %v", i, err)
		}
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 10 {
		t.Errorf("Uses = %d, want 10", k.Uses)
	}
}

func TestEnrollExpiredKeyRefused(t *testing.T) {
	s, clock := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Expires: clock.now().Add(24 * time.Hour)})
	clock.advance(24*time.Hour - time.Nanosecond)
	if _, _, err := s.Enroll(key, "pump-1"); err != nil {
		t.Fatalf("Enroll just before expiry: %v", err)
	}
	clock.advance(time.Nanosecond)
	if _, _, err := s.Enroll(key, "pump-2"); !errors.Is(err, ErrExpired) {
		t.Errorf("Enroll at expiry = %v, want ErrExpired", err)
	}
	clock.advance(time.Hour)
	if _, _, err := s.Enroll(key, "pump-2"); !errors.Is(err, ErrExpired) {
		t.Errorf("Enroll after expiry = %v, want ErrExpired", err)
	}
	if _, err := s.Device("pump-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("device enrolled with an expired key was stored: %v", err)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 1 {
		t.Errorf("Uses = %d, want 1", k.Uses)
	}
}

func TestEnrollWrongKeyIsBadCredentials(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	revoked, revokedRec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	if err := s.RevokeEnrollKey(revokedRec.ID); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(key[len(EnrollKeyPrefix):])
	flip := func(i int) string {
		b := slices.Clone(raw)
		b[i] ^= 1
		return EnrollKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	}
	other := newTestStore(t)
	addGroups(t, other, "plant-a")
	foreign, _ := createEnrollKey(t, other, EnrollKey{Group: "plant-a"})
	body := key[len(EnrollKeyPrefix):]

	for _, tc := range []struct{ desc, key string }{
		{"wrong secret", flip(23)},
		{"wrong id", flip(0)},
		{"another store's key", foreign},
		{"revoked", revoked},
		{"token prefix", TokenPrefix + body},
		{"upper-case prefix", "RFE_" + body},
		{"no prefix", body},
		{"empty", ""},
		{"prefix only", EnrollKeyPrefix},
		{"truncated", key[:len(key)-1]},
		{"over-long", key + "A"},
		{"very long", key + strings.Repeat("A", 1<<20)},
		{"padded", key + "=="},
		{"standard base64 alphabet", EnrollKeyPrefix + strings.NewReplacer("-", "+", "_", "/").Replace(body[:31]) + "+"},
		{"newline inside", key[:10] + "\n" + key[11:]},
		{"space inside", key[:10] + " " + key[11:]},
		{"binary", EnrollKeyPrefix + string(raw) + "\x00\xff\xfe\x80\x01\x02\x03\x04"},
		{"non-ASCII", EnrollKeyPrefix + strings.Repeat("é", 16)},
		{"NUL bytes", strings.Repeat("\x00", 36)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d, secret, err := s.Enroll(tc.key, "pump-17")
			if !errors.Is(err, ErrBadCredentials) || secret != "" || d.ID != "" {
				t.Errorf("Enroll = %+v, %q, %v; want ErrBadCredentials only", d, secret, err)
			}
			if err != nil && tc.key != "" && strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
	if _, err := s.Device("pump-17"); !errors.Is(err, ErrNotFound) {
		t.Errorf("device stored after wrong keys: %v", err)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 0 {
		t.Errorf("Uses = %d after wrong keys, want 0", k.Uses)
	}
	if _, _, err := s.Enroll(key, "pump-17"); err != nil {
		t.Errorf("Enroll with the right key after wrong ones: %v", err)
	}
}

func TestEnrollChecksKeyBeforeDevice(t *testing.T) {
	s, _ := newEnrollStore(t)
	if err := addDevice(s, Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	key, _ := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	bad := key[:len(key)-1] + "A"
	if bad == key {
		bad = key[:len(key)-1] + "B"
	}
	// Without a valid key, neither a taken nor an invalid id is revealed.
	for _, id := range []string{"pump-17", "Not A Label", ""} {
		if _, _, err := s.Enroll(bad, id); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Enroll(wrong key, %q) = %v, want ErrBadCredentials", id, err)
		}
	}
}

func TestEnrollExistingDeviceIsErrExists(t *testing.T) {
	s, _ := newEnrollStore(t)
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Max: 1})
	if _, _, err := s.Enroll(key, "pump-17"); !errors.Is(err, ErrExists) {
		t.Errorf("Enroll of an existing device = %v, want ErrExists", err)
	}
	// The existing device is untouched and the refused try is not a use.
	d, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret)
	if err != nil || len(d.Groups) != 0 {
		t.Errorf("existing device after refused enrolment = %+v, %v", d, err)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 0 {
		t.Errorf("Uses = %d, want 0", k.Uses)
	}
	if _, _, err := s.Enroll(key, "pump-18"); err != nil {
		t.Errorf("Enroll of a free id: %v", err)
	}
}

func TestEnrollInvalidDeviceIDIsErrInvalid(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	for _, id := range []string{"", "Pump", "-pump", "pump.17", strings.Repeat("a", 64), "pump\x00"} {
		if _, _, err := s.Enroll(key, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Enroll(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 0 {
		t.Errorf("Uses = %d, want 0", k.Uses)
	}
}

func TestEnrollEnforcesGroupQuota(t *testing.T) {
	s, _ := newEnrollStore(t)
	if err := s.AddGroup(Group{Name: "small", MaxDevices: 2}); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-0", Groups: []string{"small"}}); err != nil {
		t.Fatal(err)
	}
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "small", Max: 5})
	if _, _, err := s.Enroll(key, "pump-1"); err != nil {
		t.Fatalf("Enroll within the group quota: %v", err)
	}
	_, _, err := s.Enroll(key, "pump-2")
	if !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), `"small"`) {
		t.Errorf("Enroll past the group quota = %v, want ErrQuota naming the group", err)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 1 {
		t.Errorf("Uses = %d, want 1", k.Uses)
	}
	if err := s.SetGroupMaxDevices("small", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enroll(key, "pump-2"); err != nil {
		t.Errorf("Enroll after the quota was lifted: %v", err)
	}
}

func TestEnrollKeysSortedByCreation(t *testing.T) {
	s, clock := newEnrollStore(t)
	var want []string
	for range 5 {
		_, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
		want = append(want, rec.ID)
		clock.advance(time.Second)
	}
	keys, err := s.EnrollKeys()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("EnrollKeys() ids = %q, want creation order %q", got, want)
	}
}

func TestRevokeEnrollKey(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a"})
	if _, _, err := s.Enroll(key, "pump-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeEnrollKey(rec.ID); err != nil {
		t.Fatalf("RevokeEnrollKey: %v", err)
	}
	if _, _, err := s.Enroll(key, "pump-2"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Enroll with a revoked key = %v, want ErrBadCredentials", err)
	}
	if keys, _ := s.EnrollKeys(); len(keys) != 0 {
		t.Errorf("EnrollKeys() = %+v after revoking the only key", keys)
	}
	// A device enrolled before keeps working.
	if _, err := s.Device("pump-1"); err != nil {
		t.Errorf("device enrolled before the revocation: %v", err)
	}
	for _, id := range []string{rec.ID, "", "zz", strings.ToUpper(rec.ID), key} {
		if err := s.RevokeEnrollKey(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeEnrollKey(%.20q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestEnrollPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clock := setClock(s, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	addGroups(t, s, "plant-a")
	expires := clock.now().Add(time.Hour)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Max: 2, Expires: expires})
	_, secret, err := s.Enroll(key, "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clock = setClock(s, clock.now())
	want := rec
	want.Uses = 1
	if got := enrollKeyByID(t, s, rec.ID); got != want {
		t.Errorf("key after reopen = %+v, want %+v", got, want)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-1", secret); err != nil {
		t.Errorf("enrolled device's secret after reopen: %v", err)
	}
	if _, _, err := s.Enroll(key, "pump-2"); err != nil {
		t.Errorf("second use after reopen: %v", err)
	}
	if _, _, err := s.Enroll(key, "pump-3"); !errors.Is(err, ErrQuota) {
		t.Errorf("third use of a 2-use key across a reopen = %v, want ErrQuota", err)
	}
	clock.advance(time.Hour)
	if err := s.RevokeEnrollKey(rec.ID); err != nil {
		t.Fatal(err)
	}
	key2, _ := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Expires: clock.now().Add(time.Minute)})
	clock.advance(time.Minute)
	if _, _, err := s.Enroll(key2, "pump-3"); !errors.Is(err, ErrExpired) {
		t.Errorf("Enroll with an expired key = %v, want ErrExpired", err)
	}
}

// Exercised under -race: a key's Max holds when agents enrol at once.
func TestEnrollMaxHoldsUnderConcurrentUse(t *testing.T) {
	s, _ := newEnrollStore(t)
	key, rec := createEnrollKey(t, s, EnrollKey{Group: "plant-a", Max: 4})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, full int
	)
	for i := range 16 {
		wg.Go(func() {
			_, _, err := s.Enroll(key, fmt.Sprint("pump-", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrQuota):
				full++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 4 || full != 12 {
		t.Errorf("%d enrolments succeeded and %d hit Max, want 4 and 12", ok, full)
	}
	if k := enrollKeyByID(t, s, rec.ID); k.Uses != 4 {
		t.Errorf("Uses = %d, want 4", k.Uses)
	}
}

func TestParseEnrollKeyRoundTrip(t *testing.T) {
	for range 100 {
		key, id, secret, err := newRandomKey(EnrollKeyPrefix)
		if err != nil {
			t.Fatal(err)
		}
		gotID, gotSecret, ok := parseRandomKey(EnrollKeyPrefix, key)
		if !ok || gotID != id || gotSecret != secret {
			t.Fatalf("parseEnrollKey(newRandomKey(EnrollKeyPrefix)) = %q, %x, %v; want %q, %x", gotID, gotSecret, ok, id, secret)
		}
		if !validKeyID(id) {
			t.Fatalf("id %q of a new key is not a valid id", id)
		}
	}
}

func FuzzParseEnrollKey(f *testing.F) {
	key, _, _, err := newRandomKey(EnrollKeyPrefix)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{key, "", EnrollKeyPrefix, key + "A", key[:35], TokenPrefix + key[4:], "rfe_" + strings.Repeat("\xff", 32)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := parseRandomKey(EnrollKeyPrefix, s)
		if !ok {
			return
		}
		// Anything accepted is exactly one key, spelled the one way
		// newEnrollKey spells it.
		raw, err := hex.DecodeString(id)
		if err != nil || len(raw) != keyIDLen || len(secret) != keySecretLen {
			t.Fatalf("parseEnrollKey(%q) = %q, %x", s, id, secret)
		}
		if again := EnrollKeyPrefix + base64.RawURLEncoding.EncodeToString(append(raw, secret...)); again != s {
			t.Fatalf("parseEnrollKey accepted %q, which re-encodes as %q", s, again)
		}
	})
}

// enrollKeyByID returns the stored key with the given id.
func enrollKeyByID(t *testing.T, s *Store, id string) EnrollKey {
	t.Helper()
	keys, err := s.EnrollKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	t.Fatalf("no enrolment key %s", id)
	return EnrollKey{}
}
