package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// atOnce runs try n times in as many goroutines, released together, and
// returns the errors.
func atOnce(n int, try func() error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = try()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// countChecks counts the credentials the guard checks against the store
// from now on. Each check takes a few milliseconds more, as an argon2id
// check waiting for its turn does: the window in which parallel attempts
// used to slip past the lockout, now the same for a TOTP code or a cached
// secret.
func (f *fixture) countChecks() *atomic.Int64 {
	var n atomic.Int64
	f.g.checkHook = func() {
		n.Add(1)
		time.Sleep(5 * time.Millisecond)
	}
	return &n
}

// failedEvents counts the failed attempts of kind in the audit log.
func (f *fixture) failedEvents(kind string) int {
	var n int
	for _, ev := range f.events(kind) {
		if !ev.OK {
			n++
		}
	}
	return n
}

// TestParallelGuessesAreCheckedAtMostTheLimit is the attack of issue 15
// (item 2): 100 wrong guesses for one principal at once. The lockout used to
// be looked at before the slow check and the failure recorded after it, so
// every request already waiting for argon2id had passed the look and all
// 100 were checked. Now an attempt is reserved before the check, and
// failures plus attempts in flight never exceed the limit.
func TestParallelGuessesAreCheckedAtMostTheLimit(t *testing.T) {
	const n = 100
	for _, tt := range []struct {
		name string
		kind string // of the audit events of a checked failure
		// setup returns a wrong guess of the attacker's and the right
		// credential, sent from where the lockout applies to it.
		setup func(t *testing.T, f *fixture) (wrong, right func() error)
	}{
		{"proxy password", store.AuditLogin, func(t *testing.T, f *fixture) (func() error, func() error) {
			return func() error { _, err := f.g.User(context.Background(), attacker, "alice", "guess"); return err },
				func() error { _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); return err }
		}},
		{"web password", store.AuditLogin, func(t *testing.T, f *fixture) (func() error, func() error) {
			return func() error { _, err := f.g.Password(context.Background(), attacker, "alice", "guess"); return err },
				func() error { _, err := f.g.Password(context.Background(), office, "alice", "alice-pass"); return err }
		}},
		{"TOTP code", store.AuditLogin, func(t *testing.T, f *fixture) (func() error, func() error) {
			code := nextCode(t, f.enableTOTP(t, "alice"))
			return func() error { return f.g.TOTP(context.Background(), attacker, "alice", "000000") },
				func() error { return f.g.TOTP(context.Background(), office, "alice", code) }
		}},
		{"adopted device secret", store.AuditAgent, func(t *testing.T, f *fixture) (func() error, func() error) {
			if err := f.st.AddDeviceWithSecret(store.Device{ID: "plc-1", Groups: []string{"g"}}, "plc-pass"); err != nil {
				t.Fatal(err)
			}
			// Adopted secrets are locked per id and address: the right
			// one from the attacker's address waits for the lockout.
			return func() error { _, err := f.g.Device(context.Background(), attacker, "plc-1", "guess"); return err },
				func() error { _, err := f.g.Device(context.Background(), attacker, "plc-1", "plc-pass"); return err }
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			wrong, right := tt.setup(t, f)
			checks := f.countChecks()
			var locked int
			for _, err := range atOnce(n, wrong) {
				switch {
				case isLocked(err):
					locked++
				case !errors.Is(err, store.ErrBadCredentials):
					t.Fatalf("wrong guess: %v", err)
				}
			}
			checked := int(checks.Load())
			t.Logf("%d of %d guesses checked, %d refused as locked out", checked, n, locked)
			if checked > DefaultFailures || checked == 0 {
				t.Errorf("%d guesses checked, want 1 to %d", checked, DefaultFailures)
			}
			if checked+locked != n {
				t.Errorf("%d checked + %d locked out, want %d", checked, locked, n)
			}
			if got := f.failedEvents(tt.kind); got != checked {
				t.Errorf("%d failures audited, want one per check, %d", got, checked)
			}
			if got := len(f.events(store.AuditLockout)); got != 1 {
				t.Errorf("%d lockouts audited, want 1", got)
			}

			err := right()
			var lo *LockedOutError
			if !errors.As(err, &lo) {
				t.Fatalf("right credential after the attack: %v, want refused until the lockout ends", err)
			}
			f.clk.Add(lo.Wait)
			if err := right(); err != nil {
				t.Fatalf("right credential after the lockout: %v", err)
			}
		})
	}
}

// TestParallelRightPasswordsAllGetIn: a client that opens many connections
// at once with a right password (a browser through the proxy, before the
// store caches the check) is not refused for its own attempts in flight:
// an attempt that finds its keys full waits for them to end.
func TestParallelRightPasswordsAllGetIn(t *testing.T) {
	f := newFixture(t)
	checks := f.countChecks()
	for i, err := range atOnce(20, func() error { _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); return err }) {
		if err != nil {
			t.Errorf("connection %d: %v", i+1, err)
		}
	}
	t.Logf("%d checks", checks.Load())
}
