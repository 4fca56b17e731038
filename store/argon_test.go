package store

import (
	"context"
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
	if _, err := s.CheckDeviceSecret(context.Background(), id, secret); err != nil {
		t.Fatalf("CheckDeviceSecret(%q, right secret): %v", id, err)
	}
	return argonRuns(s) - before
}

// checkSecretRefused checks a secret that must be refused with
// ErrBadCredentials; it returns how many argon2id computations ran.
func checkSecretRefused(t testing.TB, s *Store, id, secret string) uint64 {
	t.Helper()
	before := argonRuns(s)
	if _, err := s.CheckDeviceSecret(context.Background(), id, secret); !errors.Is(err, ErrBadCredentials) {
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
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-1", "weak"); !errors.Is(err, ErrDisabled) {
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
			func(s *Store) { _, _ = s.CheckDeviceSecret(context.Background(), "pump-1", "wrong") }},
		{"user password",
			func(s *Store) error { return s.AddUser("alice", "alice-pw", RoleUser, nil) },
			func(s *Store) { _, _ = s.CheckPassword(context.Background(), "alice", "wrong") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			if err := tc.add(s); err != nil {
				t.Fatal(err)
			}
			var peak atomic.Int32
			s.SetArgonHook(inFlightHook(&peak))
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
		if _, err := s.CheckDeviceSecret(context.Background(), id, secret); err != nil {
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

// holdGate fills s's argon2id gate with checks of pump-1's secret that stay
// inside the hook until the returned release is called; it returns once
// every slot is held, with the number of slots. Each holder counts as a
// run once released.
func holdGate(t *testing.T, s *Store) (release func(), slots int) {
	t.Helper()
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	slots = cap(s.argon.slots)
	entered, unblock := make(chan struct{}, slots), make(chan struct{})
	s.SetArgonHook(func() {
		entered <- struct{}{}
		<-unblock
	})
	var wg sync.WaitGroup
	for range slots {
		wg.Go(func() { _, _ = s.CheckDeviceSecret(context.Background(), "pump-1", "wrong") })
	}
	for range slots {
		<-entered
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(unblock)
			wg.Wait()
			s.SetArgonHook(nil)
		})
	}
	t.Cleanup(release)
	return release, slots
}

// TestCheckWhoseContextEndsLeavesTheGateUnhashed: a check queued behind a
// full gate whose context ends (its client hung up) returns at once with
// the context's error, and never computes, even once a slot frees.
func TestCheckWhoseContextEndsLeavesTheGateUnhashed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(ctx context.Context, s *Store) error
	}{
		{"device secret", func(ctx context.Context, s *Store) error {
			_, err := s.CheckDeviceSecret(ctx, "pump-1", "weak")
			return err
		}},
		{"password", func(ctx context.Context, s *Store) error {
			_, err := s.CheckPassword(ctx, "alice", "alice-pw")
			return err
		}},
		{"proxy credentials", func(ctx context.Context, s *Store) error {
			_, err := s.Authenticate(ctx, "alice", "alice-pw")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			if err := s.AddUser("alice", "alice-pw", RoleUser, nil); err != nil {
				t.Fatal(err)
			}
			release, holders := holdGate(t, s)
			before := argonRuns(s)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- tc.check(ctx, s) }()
			waitUntil(t, "the check waits for a slot", func() bool { return s.ArgonStats().Waiting == 1 })
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("check after its context ended: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the check still waits for the gate after its context ended")
			}
			if w := s.ArgonStats().Waiting; w != 0 {
				t.Errorf("%d checks waiting after the only one left", w)
			}
			release()
			if n := argonRuns(s) - before - uint64(holders); n != 0 {
				t.Errorf("the abandoned check ran argon2id %d times, want 0", n)
			}
		})
	}
}

// TestCheckWithAnEndedContextDoesNotHash: a context that has ended by the
// time a slot is free (the select may pick the slot) is looked at again
// before the computation.
func TestCheckWithAnEndedContextDoesNotHash(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-1"}, "weak"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := argonRuns(s)
	for range 50 { // free slots and an ended context: either select case may win
		if _, err := s.CheckDeviceSecret(ctx, "pump-1", "weak"); !errors.Is(err, context.Canceled) {
			t.Fatalf("check with an ended context: %v, want context.Canceled", err)
		}
	}
	if n := argonRuns(s) - before; n != 0 {
		t.Errorf("checks with an ended context ran argon2id %d times", n)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-1", "weak"); err != nil {
		t.Errorf("a live check after them: %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkColdStartChecks is the cold start of a fleet of adopted secrets
// on this machine: each iteration costs what the first check of one
// device's secret after a restart costs (an argon2id computation through
// the gate; a wrong secret, which is never cached, costs the same), run
// from more goroutines than CPUs, as in a storm. ns/op is the throughput
// across every core, so 10,000 devices cost 10,000 × ns/op.
func BenchmarkColdStartChecks(b *testing.B) {
	s, err := open(b.TempDir(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.AddDeviceWithSecret(Device{ID: "adopted"}, "the-old-password"); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8) // more checks than CPUs, as in a storm: the gate queues them
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.CheckDeviceSecret(context.Background(), "adopted", "not-the-password"); !errors.Is(err, ErrBadCredentials) {
				b.Error(err)
				return
			}
		}
	})
}
