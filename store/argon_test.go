package store

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rawDevice reads the stored record of a device.
func rawDevice(t testing.TB, s *Store, id string) deviceRecord {
	t.Helper()
	var rec deviceRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getDevice(tx, id)
		return err
	})
	if err != nil {
		t.Fatalf("raw device %q: %v", id, err)
	}
	return rec
}

// setSecretHash replaces the stored secret hash of a device, as an older
// version of the reflector (or a database editor) may have left it.
func setSecretHash(t testing.TB, s *Store, id, hash string) {
	t.Helper()
	_, err := s.updateDevice(id, func(_ *bolt.Tx, rec *deviceRecord) error {
		rec.SecretHash = hash
		return nil
	})
	if err != nil {
		t.Fatalf("set secret hash of %q: %v", id, err)
	}
}

// argonRuns returns how many argon2id computations s has run.
func argonRuns(s *Store) uint64 { return s.argon.runs.Load() }

// checkSecretOK checks the device's secret and fails the test unless it is
// accepted; it returns how many argon2id computations the check ran.
func checkSecretOK(t testing.TB, s *Store, id, secret string) uint64 {
	t.Helper()
	before := argonRuns(s)
	if _, err := s.CheckDeviceSecret(id, secret); err != nil {
		t.Fatalf("CheckDeviceSecret(%q, right secret): %v", id, err)
	}
	return argonRuns(s) - before
}

// checkSecretRefused checks a secret that must be refused with
// ErrBadCredentials; it returns how many argon2id computations ran.
func checkSecretRefused(t testing.TB, s *Store, id, secret string) uint64 {
	t.Helper()
	before := argonRuns(s)
	if _, err := s.CheckDeviceSecret(id, secret); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("CheckDeviceSecret(%q, wrong secret) = %v, want ErrBadCredentials", id, err)
	}
	return argonRuns(s) - before
}

func TestAdoptedSecretIsStoredAsArgon2id(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	if h := rawDevice(t, s, "pump-1").SecretHash; !strings.HasPrefix(h, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Errorf("adopted secret stored as %.20q…, want argon2id with the device parameters", h)
	}
	if n := checkSecretOK(t, s, "pump-1", "weak"); n != 1 {
		t.Errorf("cold check ran argon2id %d times, want 1", n)
	}
	checkSecretRefused(t, s, "pump-1", "Weak")

	generated, err := s.AddDevice(Device{ID: "pump-2"})
	if err != nil {
		t.Fatal(err)
	}
	if h := rawDevice(t, s, "pump-2").SecretHash; h != hashSecret(generated) {
		t.Errorf("generated secret stored as %.20q…, want sha256", h)
	}
	if n := checkSecretOK(t, s, "pump-2", generated); n != 0 {
		t.Errorf("generated secret check ran argon2id %d times, want 0", n)
	}
}

func TestImportedSecretsAreStoredAsArgon2id(t *testing.T) {
	s := newTestStore(t)
	ds := []DeviceImport{importOf("pump-1", "one"), importOf("pump-2", "two"), importOf("pump-3", "three")}
	before := argonRuns(s)
	if err := s.CheckDeviceImport(ds); err != nil {
		t.Fatal(err)
	}
	if n := argonRuns(s) - before; n != 0 {
		t.Errorf("dry run hashed %d secrets, want 0", n)
	}
	if err := s.ImportDevices(ds); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if h := rawDevice(t, s, d.Device.ID).SecretHash; !strings.HasPrefix(h, argonPrefix) {
			t.Errorf("%s: imported secret stored as %.20q…, want argon2id", d.Device.ID, h)
		}
		checkSecretOK(t, s, d.Device.ID, d.Secret)
		checkSecretRefused(t, s, d.Device.ID, d.Secret+"x")
	}
}

func TestRefusedImportHashesNothing(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "taken"); err != nil {
		t.Fatal(err)
	}
	before := argonRuns(s)
	err := s.ImportDevices([]DeviceImport{importOf("pump-1", "dup"), importOf("pump-2", "new")})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("ImportDevices = %v, want ErrExists", err)
	}
	if n := argonRuns(s) - before; n != 0 {
		t.Errorf("refused import hashed %d secrets, want 0", n)
	}
}

// A device adopted before adopted secrets got argon2id keeps its sha256
// record, and it still works.
func TestOldSHA256AdoptedSecretStillVerifies(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "placeholder"); err != nil {
		t.Fatal(err)
	}
	setSecretHash(t, s, "pump-1", hashSecret("old-password"))
	if n := checkSecretOK(t, s, "pump-1", "old-password"); n != 0 {
		t.Errorf("sha256 check ran argon2id %d times", n)
	}
	checkSecretRefused(t, s, "pump-1", "placeholder")
}

func TestAdoptedSecretCache(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	if n := checkSecretOK(t, s, "pump-1", "weak"); n != 1 {
		t.Fatalf("cold check ran argon2id %d times, want 1", n)
	}
	start := time.Now()
	n := checkSecretOK(t, s, "pump-1", "weak")
	if n != 0 {
		t.Errorf("cached check ran argon2id %d times, want 0", n)
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		// A cached check is a read transaction and an HMAC, some µs;
		// the bound is loose for -race and loaded machines.
		t.Errorf("cached check took %v", d)
	}

	// A wrong secret after the right one is no hit, and is checked in full.
	if n := checkSecretRefused(t, s, "pump-1", "weak2"); n != 1 {
		t.Errorf("wrong secret ran argon2id %d times, want 1", n)
	}
	checkSecretOK(t, s, "pump-1", "weak") // the entry survives a failure

	// The same secret under a new stored hash (a new salt) is not
	// accepted from the cache: it is checked again.
	fresh, err := hashPassword("weak")
	if err != nil {
		t.Fatal(err)
	}
	setSecretHash(t, s, "pump-1", fresh)
	if n := checkSecretOK(t, s, "pump-1", "weak"); n != 1 {
		t.Errorf("check under a changed stored hash ran argon2id %d times, want 1", n)
	}

	// A changed secret: the old one is refused although it was cached.
	other, err := hashPassword("strong")
	if err != nil {
		t.Fatal(err)
	}
	setSecretHash(t, s, "pump-1", other)
	checkSecretRefused(t, s, "pump-1", "weak")
	checkSecretOK(t, s, "pump-1", "strong")
}

func TestAdoptedSecretCacheAfterRotateAndRemove(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	checkSecretOK(t, s, "pump-1", "weak")
	secret, err := s.RotateDeviceSecret("pump-1")
	if err != nil {
		t.Fatal(err)
	}
	checkSecretRefused(t, s, "pump-1", "weak")
	if n := checkSecretOK(t, s, "pump-1", secret); n != 0 {
		t.Errorf("rotated (generated) secret ran argon2id %d times", n)
	}

	if err := s.AddDeviceWithSecret(Device{ID: "pump-2"}, "weak"); err != nil {
		t.Fatal(err)
	}
	checkSecretOK(t, s, "pump-2", "weak")
	if err := s.RemoveDevice("pump-2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.devSecrets.entries.Load("pump-2"); ok {
		t.Error("cache entry kept after RemoveDevice")
	}
	checkSecretRefused(t, s, "pump-2", "weak")
	// The same id and secret again: a new record, a new salt, a cold check.
	if err := s.AddDeviceWithSecret(Device{ID: "pump-2"}, "weak"); err != nil {
		t.Fatal(err)
	}
	if n := checkSecretOK(t, s, "pump-2", "weak"); n != 1 {
		t.Errorf("check of a re-added device ran argon2id %d times, want 1", n)
	}
}

// A disabled device is refused with ErrDisabled, cached secret or not.
func TestAdoptedSecretCacheKeepsDisabledRefused(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	checkSecretOK(t, s, "pump-1", "weak")
	if err := s.SetDeviceDisabled("pump-1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckDeviceSecret("pump-1", "weak"); !errors.Is(err, ErrDisabled) {
		t.Errorf("disabled device with cached secret: %v, want ErrDisabled", err)
	}
	checkSecretRefused(t, s, "pump-1", "wrong")
}

// An unknown id is checked against the cheap dummy and leaves no entry.
func TestUnknownDeviceLeavesNoCacheEntry(t *testing.T) {
	s := newTestStore(t)
	if n := checkSecretRefused(t, s, "nobody", "weak"); n != 0 {
		t.Errorf("unknown id ran argon2id %d times, want 0", n)
	}
	if _, ok := s.devSecrets.entries.Load("nobody"); ok {
		t.Error("cache entry for an unknown id")
	}
}

// inFlightHook returns a gate hook that records the most computations in
// the gate at once, holding each a little so that they overlap.
func inFlightHook(peak *atomic.Int32) func() {
	var now atomic.Int32
	return func() {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		now.Add(-1)
	}
}

func TestArgonGateBoundsConcurrentChecks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		add   func(*Store) error
		check func(*Store) // a failing check: failures are never cached, so each one hashes
	}{
		{"adopted device secret",
			func(s *Store) error { return s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak") },
			func(s *Store) { _, _ = s.CheckDeviceSecret("pump-1", "wrong") }},
		{"user password",
			func(s *Store) error { return s.AddUser("alice", "alice-pw", RoleUser, nil) },
			func(s *Store) { _, _ = s.CheckPassword("alice", "wrong") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			if err := tc.add(s); err != nil {
				t.Fatal(err)
			}
			var peak atomic.Int32
			s.argon.hook = inFlightHook(&peak)
			const checks = 20
			before := argonRuns(s)
			var wg sync.WaitGroup
			for range checks {
				wg.Go(func() { tc.check(s) })
			}
			wg.Wait()
			if n := argonRuns(s) - before; n != checks {
				t.Errorf("%d checks ran argon2id %d times", checks, n)
			}
			if p, limit := peak.Load(), int32(runtime.GOMAXPROCS(0)); p > limit || p < 1 {
				t.Errorf("%d argon2id computations at once, want 1 to GOMAXPROCS=%d", p, limit)
			}
		})
	}
}

func BenchmarkCheckDeviceSecret(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	generated, err := s.AddDevice(Device{ID: "generated"})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.AddDeviceWithSecret(Device{ID: "adopted"}, "the-old-password"); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, id, secret string) {
		if _, err := s.CheckDeviceSecret(id, secret); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("generated", func(b *testing.B) {
		for b.Loop() {
			check(b, "generated", generated)
		}
	})
	b.Run("adopted-cold", func(b *testing.B) {
		for b.Loop() {
			s.devSecrets.forget("adopted")
			check(b, "adopted", "the-old-password")
		}
	})
	b.Run("adopted-cached", func(b *testing.B) {
		check(b, "adopted", "the-old-password")
		for b.Loop() {
			check(b, "adopted", "the-old-password")
		}
	})
}
