package auth

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestLimiter(cfg LimiterConfig) (*Limiter, *clock) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	return NewLimiter(cfg), clk
}

// failN records n failures of keys, a second apart, and returns the last
// result.
func failN(l *Limiter, clk *clock, n int, keys ...string) time.Duration {
	var d time.Duration
	for range n {
		d = l.Failure(keys...)
		clk.Add(time.Second)
	}
	return d
}

func TestFiveFailuresLockOutForLockout(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	for i := range 4 {
		if d := l.Failure("user:alice"); d != 0 {
			t.Fatalf("failure %d locked out for %v", i+1, d)
		}
		if d := l.Blocked("user:alice"); d != 0 {
			t.Fatalf("blocked for %v after %d failures", d, i+1)
		}
		clk.Add(time.Second)
	}
	if d := l.Failure("user:alice"); d != time.Minute {
		t.Fatalf("fifth failure: lockout %v, want 1m", d)
	}
	clk.Add(20 * time.Second)
	d := l.Blocked("user:alice")
	if d != 40*time.Second {
		t.Errorf("Blocked 20s into the lockout = %v, want 40s", d)
	}
	if got := tunnel.RetryAfterSeconds(d); got != "40" {
		t.Errorf("Retry-After %s, want 40", got)
	}
	clk.Add(40 * time.Second)
	if d := l.Blocked("user:alice"); d != 0 {
		t.Errorf("still blocked for %v after the lockout ended", d)
	}
}

func TestLockoutDoublesUpToMax(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	want := time.Minute
	for round := range 10 {
		if d := failN(l, clk, 5, "addr:192.0.2.1"); d != want {
			t.Fatalf("lockout %d = %v, want %v", round+1, d, want)
		}
		clk.Add(l.Blocked("addr:192.0.2.1"))
		want = min(2*want, time.Hour)
	}
	if want != time.Hour {
		t.Fatalf("test did not reach the cap")
	}
}

func TestLockoutLevelDecaysAfterMaxLockoutWithoutFailures(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	const k = "user:alice"
	failN(l, clk, 5, k) // 1m
	clk.Add(l.Blocked(k))
	failN(l, clk, 5, k) // 2m
	clk.Add(l.Blocked(k))

	// Less than MaxLockout after the lockout ended: still doubling.
	clk.Add(59 * time.Minute)
	if d := failN(l, clk, 5, k); d != 4*time.Minute {
		t.Fatalf("lockout after 59m quiet = %v, want 4m", d)
	}
	clk.Add(l.Blocked(k) + time.Hour)
	if d := failN(l, clk, 5, k); d != time.Minute {
		t.Fatalf("lockout after an hour quiet = %v, want 1m again", d)
	}
}

func TestFailuresOutsideWindowDoNotCount(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	// One every 15s: four in any minute, never five.
	for i := range 20 {
		if d := l.Failure("k"); d != 0 {
			t.Fatalf("failure %d locked out for %v with at most 4 in any minute", i+1, d)
		}
		clk.Add(15 * time.Second)
	}
	// Five within a minute, after all that: locked.
	clk.Add(time.Minute)
	if d := failN(l, clk, 5, "k"); d != time.Minute {
		t.Fatalf("5 failures in 5s: lockout %v, want 1m", d)
	}
}

func TestSlidingWindowCatchesBurstAcrossWindowEdge(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	l.Failure("k")
	clk.Add(58 * time.Second)
	failN(l, clk, 3, "k") // at 58s, 59s, 60s: the first has just left
	if d := l.Failure("k"); d != 0 {
		t.Fatalf("locked out with 4 failures in the last minute")
	}
	if d := l.Failure("k"); d != time.Minute {
		t.Fatalf("5 failures within 3s: lockout %v, want 1m", d)
	}
}

func TestSuccessForgetsFailuresAndLevel(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	failN(l, clk, 5, "k")
	clk.Add(l.Blocked("k"))
	failN(l, clk, 4, "k")
	l.Success("k")
	if d := failN(l, clk, 4, "k"); d != 0 {
		t.Fatalf("locked out for %v after success and 4 failures", d)
	}
	if d := l.Failure("k"); d != time.Minute {
		t.Fatalf("lockout after success = %v, want the first level, 1m", d)
	}
}

func TestSuccessDoesNotLiftLockoutInForce(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	failN(l, clk, 5, "k")
	failN(l, clk, 5, "k") // ignored: locked
	l.Success("k")
	if d := l.Blocked("k"); d <= 0 {
		t.Fatal("Success lifted a lockout in force")
	}
	clk.Add(l.Blocked("k"))
	if d := failN(l, clk, 5, "k"); d != time.Minute {
		t.Errorf("next lockout %v, want 1m: the level was forgotten", d)
	}
}

func TestFailuresDuringLockoutAreNotCounted(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	failN(l, clk, 5, "k")
	until := l.Blocked("k")
	if d := l.Failure("k"); d != until {
		t.Fatalf("Failure during lockout = %v, want the remaining %v", d, until)
	}
	if d := l.Blocked("k"); d != until {
		t.Fatalf("Failure during lockout extended it to %v", d)
	}
	clk.Add(until)
	if d := failN(l, clk, 4, "k"); d != 0 {
		t.Fatalf("failures during the lockout were counted: locked for %v", d)
	}
}

func TestOtherKeysUnaffected(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	failN(l, clk, 5, "user:alice", "addr:192.0.2.1")
	if d := l.Blocked("user:bob", "addr:192.0.2.2"); d != 0 {
		t.Errorf("other keys blocked for %v", d)
	}
	if d := l.Blocked("user:bob", "addr:192.0.2.1"); d == 0 {
		t.Error("Blocked with one locked key = 0")
	}
	if d := l.Failure("user:bob"); d != 0 {
		t.Errorf("first failure of another key locked it for %v", d)
	}
}

func TestBlockedAndFailureReturnLongestAmongKeys(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	failN(l, clk, 5, "a") // 1m
	clk.Add(l.Blocked("a"))
	failN(l, clk, 4, "a")
	failN(l, clk, 4, "b")
	failN(l, clk, 5, "c") // 1m, about now
	// a reaches its second lockout (2m), b its first (1m), c is locked.
	if d := l.Failure("a", "b", "c"); d != 2*time.Minute {
		t.Errorf("Failure = %v, want the longest, 2m", d)
	}
	if d := l.Blocked("b", "a"); d != 2*time.Minute {
		t.Errorf("Blocked = %v, want 2m", d)
	}
}

func TestEmptyKeyIgnored(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{})
	if d := failN(l, clk, 10, ""); d != 0 || l.Blocked("") != 0 {
		t.Errorf("empty key locked out")
	}
	if len(l.keys) != 0 {
		t.Errorf("empty key remembered")
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	l := NewLimiter(LimiterConfig{})
	c := l.cfg
	if c.Failures != 5 || c.Window != time.Minute || c.Lockout != time.Minute || c.MaxLockout != time.Hour || c.MaxKeys != 100000 || c.Now == nil {
		t.Errorf("defaults %+v", c)
	}
	if err := (LimiterConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, bad := range []LimiterConfig{{Failures: -1}, {Window: -1}, {MaxKeys: -1}, {Lockout: 2 * time.Hour}, {Lockout: time.Minute, MaxLockout: time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
	if l := NewLimiter(LimiterConfig{Lockout: 2 * time.Hour}); l.cfg.MaxLockout != 2*time.Hour {
		t.Errorf("MaxLockout %v, want raised to Lockout", l.cfg.MaxLockout)
	}
}

func TestCustomConfig(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{Failures: 2, Window: time.Second, Lockout: 10 * time.Second, MaxLockout: 30 * time.Second})
	if d := failN(l, clk, 2, "k"); d != 0 {
		t.Fatalf("2 failures 1s apart locked for %v with a 1s window", d)
	}
	l.Failure("k")
	if d := l.Failure("k"); d != 10*time.Second {
		t.Fatalf("lockout %v, want 10s", d)
	}
	for _, want := range []time.Duration{20 * time.Second, 30 * time.Second, 30 * time.Second} {
		clk.Add(l.Blocked("k"))
		l.Failure("k")
		if d := l.Failure("k"); d != want {
			t.Fatalf("lockout %v, want %v", d, want)
		}
	}
}

func TestMaxKeysBoundsMemory(t *testing.T) {
	const maxKeys = 1000
	l, clk := newTestLimiter(LimiterConfig{MaxKeys: maxKeys})
	for i := range 50 * maxKeys {
		l.Failure(fmt.Sprint("spray:", i))
		if len(l.keys) > maxKeys {
			t.Fatalf("%d keys remembered after %d, want at most %d", len(l.keys), i+1, maxKeys)
		}
		if i%100 == 0 {
			clk.Add(time.Millisecond)
		}
	}
	// The list and the map agree.
	n := 0
	for e := l.lru.next; e != &l.lru; e = e.next {
		if l.keys[e.key] != e {
			t.Fatalf("list entry %q not in map", e.key)
		}
		n++
	}
	if n != len(l.keys) {
		t.Fatalf("list has %d entries, map %d", n, len(l.keys))
	}
}

func TestMaxKeysFullPrefersIdleKeysOverLockedOnes(t *testing.T) {
	const maxKeys = 100
	l, clk := newTestLimiter(LimiterConfig{MaxKeys: maxKeys, Lockout: 10 * time.Minute})
	failN(l, clk, 5, "victim") // locked for 10m, least recently failed
	// Fill the table with single failures, then let them leave the window.
	for i := range maxKeys - 1 {
		l.Failure(fmt.Sprint("old:", i))
	}
	clk.Add(2 * time.Minute)
	for i := range maxKeys - 1 {
		l.Failure(fmt.Sprint("new:", i))
	}
	if l.Blocked("victim") == 0 {
		t.Fatal("a locked key was dropped while idle ones could go")
	}
	if len(l.keys) > maxKeys {
		t.Fatalf("%d keys, want at most %d", len(l.keys), maxKeys)
	}
}

func TestMaxKeysFullOfLiveKeysDropsLeastRecentlyFailed(t *testing.T) {
	const maxKeys = 64
	l, _ := newTestLimiter(LimiterConfig{MaxKeys: maxKeys})
	for i := range maxKeys {
		l.Failure(fmt.Sprint("k", i))
	}
	l.Failure("k0") // k0 failed most recently now; k1 least
	l.Failure("extra")
	if _, ok := l.keys["k1"]; ok {
		t.Error("least recently failed key kept")
	}
	if _, ok := l.keys["k0"]; !ok {
		t.Error("recently failed key dropped")
	}
	if _, ok := l.keys["extra"]; !ok {
		t.Error("new key not remembered")
	}
	// A sixteenth was freed at once, so the next keys need no scan.
	if want := maxKeys - maxKeys/16 + 1; len(l.keys) != want {
		t.Errorf("%d keys after making room, want %d", len(l.keys), want)
	}
}

func TestLimiterConcurrentUse(t *testing.T) {
	l, clk := newTestLimiter(LimiterConfig{MaxKeys: 500})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint("k", (g*7+i)%700)
				switch i % 4 {
				case 0, 1:
					l.Failure(k, "shared")
				case 2:
					l.Blocked(k, "shared")
				case 3:
					l.Success(k)
				}
				if i%50 == 0 {
					clk.Add(time.Second)
				}
			}
		})
	}
	wg.Wait()
	if len(l.keys) > 500 {
		t.Errorf("%d keys, want at most 500", len(l.keys))
	}
	if l.Blocked("shared") == 0 {
		t.Error("shared key, failed by everyone, not locked")
	}
}

func TestUserKeyFoldsCase(t *testing.T) {
	if UserKey("Alice") != UserKey("alice") || UserKey("alice") != "user:alice" {
		t.Errorf("UserKey(Alice) = %q, UserKey(alice) = %q", UserKey("Alice"), UserKey("alice"))
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct {
		addr string
		want string
	}{
		{"192.0.2.1", "addr:192.0.2.1"},
		{"::ffff:192.0.2.1", "addr:192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "addr:2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "addr:2001:db8:1:2::/64"},
		{"fe80::1%eth0", "addr:fe80::/64"},
		{"::1", "addr:::/64"},
	}
	for _, tt := range tests {
		if got := AddrKey(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("AddrKey(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if got := AddrKey(netip.Addr{}); got != "" {
		t.Errorf("AddrKey(invalid) = %q, want empty", got)
	}
}

// TestMemoryPerKey checks the estimate in the Limiter's documentation.
func TestMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 keys")
	}
	const n = 100000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = AddrKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := NewLimiter(LimiterConfig{MaxKeys: n})
	for _, k := range keys {
		l.Failure(k)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	t.Logf("%d bytes per key, besides the key's own bytes", per)
	if per > 200 {
		t.Errorf("%d bytes per key, documented as about 180", per)
	}
	runtime.KeepAlive(l)
}

func BenchmarkFailureAndBlocked(b *testing.B) {
	l := NewLimiter(LimiterConfig{})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("addr:10.0.", i/256, ".", i%256)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%len(keys)]
		i++
		if l.Blocked(k, "user:alice") == 0 {
			l.Failure(k)
		}
	}
}
