package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

func TestSignOutEverywhereEndsOnlyTheCallersSessions(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var annTokens []string
	for range 2 {
		tok, _, err := f.st.CreateSession("ann", "")
		if err != nil {
			t.Fatal(err)
		}
		annTokens = append(annTokens, tok)
	}
	rootTok, _, err := f.st.CreateSession("root", "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.SignOutEverywhere(ctx, f.user(t))
	if err != nil || n != 2 {
		t.Fatalf("SignOutEverywhere = %d, %v; want 2 sessions ended", n, err)
	}
	for _, tok := range annTokens {
		if _, _, err := f.st.CheckSession(tok, ""); err == nil {
			t.Error("one of ann's sessions still works")
		}
	}
	if _, _, err := f.st.CheckSession(rootTok, ""); err != nil {
		t.Errorf("root's session ended too: %v", err)
	}
	evs := f.events(t)
	if len(evs) == 0 {
		t.Fatal("no audit event")
	}
	ev := evs[len(evs)-1]
	if ev.Kind != store.AuditUserSet || ev.Actor != "ann" || ev.User != "ann" || ev.Client != userAddr.String() {
		t.Errorf("audit event %+v", ev)
	}
	if f.accessChanged.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1", f.accessChanged.Load())
	}
	if _, err := f.svc.SignOutEverywhere(ctx, ops.Local()); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("the control socket: err = %v, want ErrForbidden", err)
	}
}
