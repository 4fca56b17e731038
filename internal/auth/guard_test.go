package auth

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

type fixture struct {
	st     *store.Store
	g      *Guard
	clk    *clock // the limiter's
	token  string
	secret string
}

var (
	attacker = netip.MustParseAddr("192.0.2.66")
	office   = netip.MustParseAddr("198.51.100.7")
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddGroup(store.Group{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser("alice", "alice-pass", store.RoleUser, []string{"g"}); err != nil {
		t.Fatal(err)
	}
	token, _, err := st.CreateToken(store.Token{User: "alice", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := st.AddDevice(store.Device{ID: "pump-1", Groups: []string{"g"}})
	if err != nil {
		t.Fatal(err)
	}
	l, clk := newTestLimiter(LimiterConfig{})
	return &fixture{st: st, g: NewGuard(st, l, nil), clk: clk, token: token, secret: secret}
}

func isLocked(err error) bool {
	var locked *LockedOutError
	return errors.As(err, &locked) && locked.Wait > 0
}

func (f *fixture) events(kind string) []store.AuditEvent {
	evs, err := f.st.AuditEvents(store.AuditFilter{Kind: kind})
	if err != nil {
		panic(err)
	}
	return evs
}

func TestPasswordLockoutRefusesUncheckedButTokensPass(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		if _, err := f.g.User(context.Background(), attacker, "alice", "guess"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	// The user name is locked out everywhere, for passwords: even the right one.
	if _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); !isLocked(err) {
		t.Fatalf("right password while locked: %v, want a lockout", err)
	}
	// A token is checked regardless.
	cred, err := f.g.User(context.Background(), office, "alice", f.token)
	if err != nil || cred.TokenID == "" {
		t.Fatalf("token while the name is locked: %v", err)
	}
	if cred, err := f.g.Token(attacker, f.token); err != nil || cred.User.Name != "alice" {
		t.Fatalf("bearer token from the locked address: %v", err)
	}
	// Wrong tokens from the locked address are answered 429 (after the check).
	if _, err := f.g.Token(attacker, "rfl_"+f.token[4:len(f.token)-2]+"AA"); !isLocked(err) {
		t.Fatalf("wrong token from the locked address: %v, want a lockout", err)
	}
	if n := len(f.events(store.AuditLockout)); n != 1 {
		t.Fatalf("%d lockout events, want 1", n)
	}
	var failed int
	for _, ev := range f.events(store.AuditLogin) {
		if !ev.OK {
			failed++
			if ev.Client != attacker.String() || ev.Reason == "" {
				t.Errorf("failed login event %+v", ev)
			}
		}
	}
	if failed != 5 {
		t.Fatalf("%d failed-login events, want 5: locked-out attempts are not checked nor logged", failed)
	}
}

func TestRightDeviceSecretPassesALockedAddress(t *testing.T) {
	f := newFixture(t)
	// Failures for other device ids lock the address, not pump-1.
	for i := range 5 {
		if _, err := f.g.Device(context.Background(), attacker, "other-"+string(rune('a'+i)), "wrong"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	if _, err := f.g.Device(context.Background(), attacker, "pump-1", "wrong"); !isLocked(err) {
		t.Fatalf("wrong secret from the locked address: %v, want a lockout", err)
	}
	if _, err := f.g.Device(context.Background(), attacker, "pump-1", f.secret); err != nil {
		t.Fatalf("right secret from a locked address: %v", err)
	}
	if err := f.st.SetDeviceDisabled("pump-1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.g.Device(context.Background(), office, "pump-1", f.secret); !errors.Is(err, store.ErrDisabled) {
		t.Fatalf("disabled device: %v", err)
	}
}

// TestAGeneratedDeviceSecretIsNeverLockedOutByOthers is the attack of
// issue 15 (item 3): device ids are public, and five wrong secrets from
// anywhere used to lock the real device out for a minute, doubling to an
// hour. A generated secret has 256 random bits: it is checked whatever the
// failures, and only wrong ones are answered 429.
func TestAGeneratedDeviceSecretIsNeverLockedOutByOthers(t *testing.T) {
	f := newFixture(t)
	for round := range 3 { // lockouts of 1m, 2m, 4m of the attacker's address
		for i := range 5 {
			if _, err := f.g.Device(context.Background(), attacker, "pump-1", "guess"); !errors.Is(err, store.ErrBadCredentials) {
				t.Fatalf("round %d, guess %d: %v", round+1, i+1, err)
			}
		}
		_, err := f.g.Device(context.Background(), attacker, "pump-1", "guess")
		var lo *LockedOutError
		if !errors.As(err, &lo) {
			t.Fatalf("round %d: wrong secret from the locked address: %v, want a lockout", round+1, err)
		}
		if _, err := f.g.Device(context.Background(), office, "pump-1", f.secret); err != nil {
			t.Fatalf("round %d: right secret from another address: %v", round+1, err)
		}
		if _, err := f.g.Device(context.Background(), attacker, "pump-1", f.secret); err != nil {
			t.Fatalf("round %d: right secret from the locked address: %v", round+1, err)
		}
		f.clk.Add(lo.Wait)
	}
}

// TestAnAdoptedDeviceSecretIsLockedPerIDAndAddress: a secret adopted from
// an existing fleet may be a guessable password, so it is refused unchecked
// after five wrong ones, as a user's password is — but only from the address
// that made them: the device elsewhere keeps connecting.
func TestAnAdoptedDeviceSecretIsLockedPerIDAndAddress(t *testing.T) {
	f := newFixture(t)
	if err := f.st.AddDeviceWithSecret(store.Device{ID: "plc-1", Groups: []string{"g"}}, "plc-pass"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := f.g.Device(context.Background(), attacker, "plc-1", "guess"); !errors.Is(err, store.ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	_, err := f.g.Device(context.Background(), attacker, "plc-1", "plc-pass")
	var lo *LockedOutError
	if !errors.As(err, &lo) || lo.Wait != DefaultLockout {
		t.Fatalf("right secret from the guessing address: %v, want locked out for %v unchecked", err, DefaultLockout)
	}
	if _, err := f.g.Device(context.Background(), office, "plc-1", "plc-pass"); err != nil {
		t.Fatalf("right secret from another address: %v", err)
	}
	if _, err := f.g.Device(context.Background(), office, "plc-1", "guess"); !errors.Is(err, store.ErrBadCredentials) {
		t.Fatalf("wrong secret from another address: %v, want checked", err)
	}
	for _, ev := range f.events(store.AuditAgent) {
		if ev.OK && ev.Client == attacker.String() {
			t.Errorf("the locked-out right secret was checked: %+v", ev)
		}
	}
	// The lockout of the pair doubles, as a user's does.
	f.clk.Add(lo.Wait)
	for range 5 {
		f.g.Device(context.Background(), attacker, "plc-1", "guess")
	}
	if _, err := f.g.Device(context.Background(), attacker, "plc-1", "plc-pass"); !errors.As(err, &lo) || lo.Wait != 2*DefaultLockout {
		t.Fatalf("second lockout: %v, want %v", err, 2*DefaultLockout)
	}
	f.clk.Add(lo.Wait)
	if _, err := f.g.Device(context.Background(), attacker, "plc-1", "plc-pass"); err != nil {
		t.Fatalf("right secret after the lockout: %v", err)
	}
}

func TestSuccessfulLoginsAreAuditedOnceAMinute(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.g.now = func() time.Time { return now }
	for range 10 {
		if _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.g.User(context.Background(), attacker, "alice", "alice-pass"); err != nil { // another address: its own event
		t.Fatal(err)
	}
	if n := len(f.events(store.AuditLogin)); n != 2 {
		t.Fatalf("%d login events, want 2", n)
	}
	now = now.Add(okAuditEvery)
	if _, err := f.g.User(context.Background(), office, "alice", "alice-pass"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(store.AuditLogin)); n != 3 {
		t.Fatalf("%d login events a minute later, want 3", n)
	}
}

func TestEnrollErrorsCarryTheEndpointsReasons(t *testing.T) {
	f := newFixture(t)
	key, _, err := f.st.CreateEnrollKey(store.EnrollKey{Group: "g", Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.g.Enroll(office, key, "pump-1"); !errors.Is(err, enroll.ErrDeviceExists) {
		t.Fatalf("taken id: %v", err)
	}
	if _, _, err := f.g.Enroll(office, key, "pump-2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.g.Enroll(office, key, "pump-3"); !errors.Is(err, enroll.ErrQuota) {
		t.Fatalf("used-up key: %v", err)
	}
	if _, _, err := f.g.Enroll(office, "rfe_nonsense", "pump-4"); !errors.Is(err, enroll.ErrKeyInvalid) {
		t.Fatalf("bad key: %v", err)
	}
}

// TestADeviceCheckWhoseClientLeftCountsNeitherWay: an adopted secret's
// check that the client abandons while it waits for the argon2id gate
// returns the context's error, is neither a failure (no lockout, no audit
// of a wrong secret) nor a success, and leaves the pair's attempts free.
func TestADeviceCheckWhoseClientLeftCountsNeitherWay(t *testing.T) {
	f := newFixture(t)
	if err := f.st.AddDeviceWithSecret(store.Device{ID: "plc-1", Groups: []string{"g"}}, "plc-pass"); err != nil {
		t.Fatal(err)
	}
	entered, unblock := make(chan struct{}), make(chan struct{})
	f.st.SetArgonHook(func() {
		entered <- struct{}{}
		<-unblock
	})
	for range DefaultFailures {
		// Each check is abandoned while it holds a slot of the gate (in
		// its hook), so it is cancelled once released: five of them would
		// lock the pair out if they counted as failures.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := f.g.Device(ctx, attacker, "plc-1", "guess")
			errc <- err
		}()
		<-entered
		cancel()
		unblock <- struct{}{}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned check: %v, want context.Canceled", err)
		}
	}
	f.st.SetArgonHook(nil)
	// And queued ones: the gate is not even entered once the context ended.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 2 * DefaultFailures {
		if _, err := f.g.Device(ctx, attacker, "plc-1", "guess"); !errors.Is(err, context.Canceled) {
			t.Fatalf("check with an ended context: %v, want context.Canceled", err)
		}
	}
	if _, err := f.g.Device(context.Background(), attacker, "plc-1", "plc-pass"); err != nil {
		t.Fatalf("right secret after abandoned checks: %v, want accepted (they counted as failures)", err)
	}
	for _, ev := range f.events(store.AuditAgent) {
		if !ev.OK {
			t.Errorf("an abandoned check was audited as a failure: %+v", ev)
		}
	}
}

// TestBeginReturnsWhenTheClientLeaves: Begin waiting for attempts in flight
// on a full key returns the context's error once the context ends, rather
// than wait maxAttemptWait for a client that has gone.
func TestBeginReturnsWhenTheClientLeaves(t *testing.T) {
	l, _ := newTestLimiter(LimiterConfig{})
	for range DefaultFailures {
		if a, _ := begin(l, "k"); a == nil {
			t.Fatal("attempt refused")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	a, d, err := l.Begin(ctx, "k")
	if a != nil || d != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Begin on a full key whose client left = %v, %v, %v; want context.Canceled", a, d, err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("Begin returned %v after the context ended", waited)
	}
}
