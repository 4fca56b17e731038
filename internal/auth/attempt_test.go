package auth

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// begin5 begins Failures attempts on k, which fills it.
func begin5(t *testing.T, l *Limiter, k string) []*Attempt {
	t.Helper()
	var as []*Attempt
	for i := range DefaultFailures {
		a, d := begin(l, k)
		if a == nil || d != 0 {
			t.Fatalf("attempt %d refused for %v", i+1, d)
		}
		as = append(as, a)
	}
	return as
}

func TestAttemptsInFlightCountTowardsTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newTestLimiter(LimiterConfig{})
		l.Failure("k")
		l.Failure("k")
		var as []*Attempt
		for range 3 {
			a, _ := begin(l, "k")
			as = append(as, a)
		}
		// 2 failures + 3 in flight: the sixth waits, and is refused with
		// the lockout the three would start if nothing ends.
		if a, d := begin(l, "k"); a != nil || d != DefaultLockout {
			t.Fatalf("Begin with the key full = %v, %v; want refused for %v", a, d, DefaultLockout)
		}
		for _, a := range as {
			a.Fail()
		}
		if d := l.Blocked("k"); d != DefaultLockout {
			t.Fatalf("after the attempts failed: blocked for %v, want %v", d, DefaultLockout)
		}
		if a, d := begin(l, "k"); a != nil || d != DefaultLockout {
			t.Fatalf("Begin while locked = %v, %v", a, d)
		}
	})
}

func TestBeginWaitsForAttemptsInFlight(t *testing.T) {
	for _, tt := range []struct {
		name      string
		end       func(*Attempt)
		wantBegun bool
	}{
		{"they succeed: it goes ahead", (*Attempt).Release, true},
		{"they fail: it is locked out", func(a *Attempt) { a.Fail() }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, _ := newTestLimiter(LimiterConfig{})
				as := begin5(t, l, "k")
				type result struct {
					a *Attempt
					d time.Duration
				}
				got := make(chan result, 1)
				go func() {
					a, d := begin(l, "k")
					got <- result{a, d}
				}()
				synctest.Wait()
				select {
				case r := <-got:
					t.Fatalf("Begin returned %v, %v while the key was full", r.a, r.d)
				default:
				}
				for _, a := range as {
					tt.end(a)
				}
				r := <-got
				if begun := r.a != nil; begun != tt.wantBegun || !begun && r.d != DefaultLockout {
					t.Fatalf("waiting Begin = %v, %v; want begun %v", r.a, r.d, tt.wantBegun)
				}
			})
		})
	}
}

func TestFailIsCountedOnReservedAndExtraKeys(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{})
	for i := range DefaultFailures {
		a, _ := begin(l, "device:plc-1@addr:192.0.2.66")
		f := a.Fail("addr:192.0.2.66")
		if last := i == DefaultFailures-1; f.Started != last || (f.Wait > 0) != last {
			t.Fatalf("failure %d: %+v", i+1, f)
		}
	}
	if d := l.Blocked("addr:192.0.2.66"); d != DefaultLockout {
		t.Fatalf("extra key blocked for %v, want %v", d, DefaultLockout)
	}
	// A key locked out already is reported, not extended.
	a, _ := begin(l, "device:plc-1@addr:198.51.100.7")
	if f := a.Fail("addr:192.0.2.66"); f.Started || f.Wait != DefaultLockout || !f.alreadyLocked() {
		t.Fatalf("failure with a locked extra key: %+v", f)
	}
}

func TestEndingAnAttemptTwiceCountsOnce(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{})
	a, _ := begin(l, "k")
	a.Fail()
	a.Fail()
	a.Release()
	if e := l.keys["k"]; e == nil || e.n != 1 || e.inflight != 0 {
		t.Fatalf("entry after ending twice: %+v", e)
	}
}

func TestReleasedAttemptLeavesNothingBehind(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{})
	a, _ := begin(l, "user:alice", "addr:192.0.2.1", "")
	a.Release()
	if len(l.keys) != 0 || l.lru.next != &l.lru {
		t.Fatalf("%d keys remembered after a released attempt", len(l.keys))
	}
	// A key with failures stays.
	l.Failure("user:alice")
	a, _ = begin(l, "user:alice")
	a.Release()
	if _, ok := l.keys["user:alice"]; !ok {
		t.Fatal("a key with a failure was dropped")
	}
}

func TestSuccessKeepsAttemptsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newTestLimiter(LimiterConfig{})
		as := begin5(t, l, "k")
		l.Success("k") // another credential of the key's was right
		if a, _ := begin(l, "k"); a != nil {
			t.Fatal("Success forgot the attempts in flight")
		}
		for _, a := range as {
			a.Fail()
		}
		if l.Blocked("k") == 0 {
			t.Fatal("the attempts' failures were lost")
		}
	})
}

func TestAttemptInFlightIsNotEvicted(t *testing.T) {
	const maxKeys = 64
	l, _ := newTestLimiter(LimiterConfig{MaxKeys: maxKeys})
	as := begin5(t, l, "victim")
	for i := range 10 * maxKeys {
		l.Failure(fmt.Sprint("spray:", i))
	}
	e := l.keys["victim"]
	if e == nil || e.inflight != DefaultFailures {
		t.Fatalf("victim's entry after the table filled: %+v", e)
	}
	if len(l.keys) > maxKeys {
		t.Fatalf("%d keys, want at most %d", len(l.keys), maxKeys)
	}
	for _, a := range as {
		a.Fail()
	}
	if l.Blocked("victim") == 0 {
		t.Fatal("victim not locked out after its attempts failed")
	}
}

func TestFailureUnlessLockedCountsNothingDuringALockout(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	for i := range DefaultFailures {
		f := l.FailureUnlessLocked("addr:192.0.2.1")
		if f.alreadyLocked() || f.Started != (i == DefaultFailures-1) {
			t.Fatalf("failure %d: %+v", i+1, f)
		}
	}
	clk.Add(10 * time.Second)
	if f := l.FailureUnlessLocked("addr:192.0.2.1"); !f.alreadyLocked() || f.Wait != 50*time.Second {
		t.Fatalf("failure during the lockout: %+v", f)
	}
	clk.Add(50 * time.Second)
	if f := l.FailureUnlessLocked("addr:192.0.2.1"); f.Wait != 0 {
		t.Fatalf("first failure after the lockout: %+v", f)
	}
}

// begin is Limiter.Begin with a context that never ends.
func begin(l *Limiter, keys ...string) (*Attempt, time.Duration) {
	a, d, err := l.Begin(context.Background(), keys...)
	if err != nil {
		panic("Begin without a deadline: " + err.Error())
	}
	return a, d
}
