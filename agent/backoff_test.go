package agent

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// maxRand returns the largest value full jitter may draw, n-1.
func maxRand(n int64) int64 { return n - 1 }

// zeroRand returns the smallest value full jitter may draw.
func zeroRand(int64) int64 { return 0 }

func TestBackoffBoundDoublesToTheCap(t *testing.T) {
	b := newBackoff(Options{})
	b.randN = maxRand
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		got := b.next(false)
		if w *= time.Second; got != w-1 {
			t.Errorf("failure %d: delay %v, want just under %v", i+1, got, w)
		}
	}
}

func TestBackoffFullJitterStaysInBounds(t *testing.T) {
	b := newBackoff(Options{})
	bound := time.Second
	for i := range 20 {
		got := b.next(false)
		if got < 0 || got >= bound {
			t.Fatalf("failure %d: delay %v outside [0, %v)", i+1, got, bound)
		}
		bound = min(2*bound, DefaultMaxDelay)
	}
}

func TestBackoffFullJitterCanBeZero(t *testing.T) {
	b := newBackoff(Options{})
	b.randN = zeroRand
	for i := range 10 {
		if got := b.next(false); got != 0 {
			t.Fatalf("failure %d: delay %v, want 0 with a zero draw", i+1, got)
		}
	}
}

func TestBackoffResets(t *testing.T) {
	tests := []struct {
		name string
		up   time.Duration
		want time.Duration // bound of the next delay
	}{
		{"up 30s resets", 30 * time.Second, time.Second},
		{"up an hour resets", time.Hour, time.Second},
		{"up 29s keeps backing off", 29 * time.Second, 16 * time.Second},
		{"dropped at once keeps backing off", 0, 16 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(Options{})
			b.randN = maxRand
			for range 4 { // bounds 1, 2, 4, 8
				b.next(false)
			}
			b.connected(tt.up)
			if got := b.next(false); got != tt.want-1 {
				t.Errorf("delay %v, want just under %v", got, tt.want)
			}
		})
	}
}

func TestBackoffUnauthorizedWaitsAtLeastTheDelay(t *testing.T) {
	for _, draw := range []func(int64) int64{zeroRand, maxRand} {
		b := newBackoff(Options{})
		b.randN = draw
		got := b.next(true)
		if got < DefaultUnauthorizedDelay || got >= DefaultUnauthorizedDelay*3/2 {
			t.Errorf("401 delay %v, want in [60s, 90s)", got)
		}
	}
	// A 401 does not shorten the wait even when the backoff was just reset.
	b := newBackoff(Options{})
	b.connected(time.Hour)
	if got := b.next(true); got < DefaultUnauthorizedDelay {
		t.Errorf("401 delay after reset %v, want ≥ 60s", got)
	}
}

func TestBackoffOptions(t *testing.T) {
	b := newBackoff(Options{BaseDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond,
		UnauthorizedDelay: 200 * time.Millisecond})
	b.randN = maxRand
	want := []time.Duration{10, 20, 40, 40}
	for i, w := range want {
		if got := b.next(false); got != w*time.Millisecond-1 {
			t.Errorf("failure %d: delay %v, want just under %v", i+1, got, w*time.Millisecond)
		}
	}
	b.randN = zeroRand
	if got := b.next(true); got != 200*time.Millisecond {
		t.Errorf("401 delay %v, want 200ms", got)
	}
}

func TestFailureLogOncePerKindThenEveryTenMinutes(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := failureLog{now: func() time.Time { return now }}
	type step struct {
		after        time.Duration
		err          error
		first, again bool
	}
	refused := errString("dial tcp 10.0.0.1:443: connect: connection refused")
	steps := []step{
		{0, refused, true, false},
		{time.Second, refused, false, false},
		{9 * time.Minute, refused, false, false},
		{time.Minute, refused, false, true}, // ten minutes after the first line
		{time.Minute, refused, false, false},
		{0, errUnauthorized, true, false}, // a new kind of failure
		{0, refused, true, false},         // and back
	}
	for i, s := range steps {
		now = now.Add(s.after)
		first, again := f.record(s.err)
		if first != s.first || again != s.again {
			t.Errorf("step %d: first=%v again=%v, want %v %v", i, first, again, s.first, s.again)
		}
	}
	f.reset()
	if first, _ := f.record(refused); !first {
		t.Error("after a connection, the same failure is new again")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestBackoffRetryAfterWaitsAtLeastTheReflectorsDelay(t *testing.T) {
	tests := []struct {
		name     string
		after    time.Duration
		min, max time.Duration // the delay's range over every draw
	}{
		{"2s", 2 * time.Second, 2 * time.Second, 2500 * time.Millisecond},
		{"shorter than the backoff's", time.Millisecond, 0, time.Second}, // the backoff's draw wins
		{"none given", 0, 0, time.Second},
		{"an hour", time.Hour, time.Hour, time.Hour},
		{"more than an hour is capped", 5 * time.Hour, time.Hour, time.Hour},
		{"negative", -time.Second, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, draw := range []func(int64) int64{zeroRand, maxRand} {
				b := newBackoff(Options{})
				b.randN = draw
				got := b.retryAfter(tt.after)
				if got < tt.min || got > tt.max {
					t.Errorf("retryAfter(%v) = %v, want in [%v, %v]", tt.after, got, tt.min, tt.max)
				}
			}
		})
	}
	// A 429 is a failure like any other: the bound doubles.
	b := newBackoff(Options{})
	b.randN = maxRand
	b.retryAfter(2 * time.Second)
	if got := b.next(false); got != 2*time.Second-1 {
		t.Errorf("delay after a 429 %v, want just under 2s (the doubled bound)", got)
	}
}

// TestARestartDoesNotSynchroniseTheFleet simulates a fleet whose tunnels
// all dropped at the same instant (the reflector was killed) after being
// up for an hour, with the reflector back 3 s later: every retry before
// then is refused at once. The first retry is drawn with full jitter, and
// the doubling bound spreads the fleet's arrivals at the restarted
// reflector over seconds: no 100 ms holds more than 5 % of it (3.3 % with
// this seed; a fleet without jitter arrives within one, 100 %). A restart
// quicker than the first retries meets them spread over the first second,
// and the reflector's 503 with Retry-After spreads the rest.
func TestARestartDoesNotSynchroniseTheFleet(t *testing.T) {
	const (
		fleet = 10000
		down  = 3 * time.Second
		slot  = 100 * time.Millisecond
	)
	rng := rand.New(rand.NewPCG(1, 2))
	perSlot := map[time.Duration]int{}
	var first []time.Duration
	for range fleet {
		b := newBackoff(Options{})
		b.randN = rng.Int64N
		b.connected(time.Hour)
		at := b.next(false) // the first retry after the lost tunnel
		first = append(first, at)
		for at < down {
			at += b.next(false)
		}
		perSlot[at/slot]++
	}
	spread := slices.Max(first) - slices.Min(first)
	if spread < 900*time.Millisecond {
		t.Errorf("first retries spread over %v, want full jitter over [0, %v)", spread, DefaultBaseDelay)
	}
	peak := 0
	for _, n := range perSlot {
		peak = max(peak, n)
	}
	if peak > fleet*5/100 {
		t.Errorf("%d of %d agents arrive within one %v after the restart, want at most 5%%", peak, fleet, slot)
	}
}
