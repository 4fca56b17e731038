package admin

import (
	"testing"
	"time"
)

func TestTicketsAreSingleUseAndExpire(t *testing.T) {
	t.Parallel()
	tk := newTickets[string](10)
	now := time.Now()
	a := tk.issue("a", now, now.Add(time.Minute))
	b := tk.issue("b", now, now.Add(time.Minute))
	if a == b || len(a) != 43 {
		t.Fatalf("codes %q %q", a, b)
	}
	if v, ok := tk.redeem(a, now); !ok || v != "a" {
		t.Fatalf("redeem a: %q %v", v, ok)
	}
	if _, ok := tk.redeem(a, now); ok {
		t.Fatal("a redeemed twice")
	}
	if _, ok := tk.redeem(b, now.Add(time.Minute)); ok {
		t.Fatal("b redeemed at its expiry")
	}
	if n := tk.len(); n != 0 {
		t.Fatalf("%d codes left", n)
	}
}

func TestTicketsAreBounded(t *testing.T) {
	t.Parallel()
	tk := newTickets[int](100)
	now := time.Now()
	var codes []string
	for i := range 1000 {
		codes = append(codes, tk.issue(i, now, now.Add(time.Duration(i)*time.Second+time.Hour)))
		if n := tk.len(); n > 100 {
			t.Fatalf("%d codes held, bound 100", n)
		}
	}
	// The soonest to expire went first; the newest stay.
	if v, ok := tk.redeem(codes[999], now); !ok || v != 999 {
		t.Fatalf("newest code: %v %v", v, ok)
	}
	if _, ok := tk.redeem(codes[0], now); ok {
		t.Fatal("oldest code kept past the bound")
	}
	// Expired codes go before live ones.
	tk = newTickets[int](2)
	old := tk.issue(1, now, now.Add(time.Second))
	live := tk.issue(2, now, now.Add(time.Hour))
	tk.issue(3, now.Add(time.Minute), now.Add(time.Hour))
	if _, ok := tk.redeem(live, now.Add(time.Minute)); !ok {
		t.Fatal("a live code was dropped while an expired one was held")
	}
	if _, ok := tk.redeem(old, now); ok {
		t.Fatal("the expired code was kept")
	}
}
