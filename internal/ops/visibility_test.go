package ops_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// pageIDs reads every page of q and returns the device ids in order.
func pageIDs(t *testing.T, f *fixture, c ops.Caller, q ops.DeviceQuery) []string {
	t.Helper()
	var ids []string
	for range 100 {
		page, err := f.svc.Devices(context.Background(), c, q)
		if err != nil {
			t.Fatalf("Devices(%+v): %v", q, err)
		}
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if page.Next == "" {
			return ids
		}
		q.After = page.Next
	}
	t.Fatalf("Devices(%+v): no end after 100 pages", q)
	return nil
}

func TestUserSeesOnlyTheDevicesOfTheirGroups(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t) // plant-a
	if got, want := pageIDs(t, f, ann, ops.DeviceQuery{Limit: 2}), []string{"gate-1", "pump-1", "valve-1"}; !slices.Equal(got, want) {
		t.Errorf("ann's devices = %v, want %v", got, want)
	}
	if _, err := f.svc.Device(ctx, ann, "pump-1"); err != nil {
		t.Errorf("Device(pump-1) of plant-a: %v", err)
	}
	// Another group's device is not found, as one that does not exist:
	// forbidden would tell that it exists.
	for _, id := range []string{"pump-2", "no-such-device"} {
		if _, err := f.svc.Device(ctx, ann, id); !errors.Is(err, store.ErrNotFound) || errors.Is(err, ops.ErrForbidden) {
			t.Errorf("Device(%s) by ann: err = %v, want ErrNotFound only", id, err)
		}
		if _, err := f.svc.DeviceStreams(ctx, ann, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeviceStreams(%s) by ann: err = %v, want ErrNotFound", id, err)
		}
	}
}

func TestUserSeesOnlyTheirOwnStreamsAdminSeesAll(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	streamIDs := func(c ops.Caller) []string {
		t.Helper()
		sts, err := f.svc.DeviceStreams(ctx, c, "pump-1")
		if err != nil {
			t.Fatalf("DeviceStreams(pump-1): %v", err)
		}
		var ids []string
		for _, st := range sts {
			ids = append(ids, st.ID)
		}
		return ids
	}
	if got := streamIDs(f.user(t)); !slices.Equal(got, []string{"s-ann"}) {
		t.Errorf("ann sees streams %v, want only her own", got)
	}
	if got := streamIDs(f.admin(t)); !slices.Equal(got, []string{"s-ann", "s-root"}) {
		t.Errorf("root sees streams %v, want all", got)
	}
	if _, err := f.svc.DeviceStreams(ctx, f.caller(t, "bob", userAddr), "pump-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("streams of another group's device: err = %v, want ErrNotFound", err)
	}
}

func TestTokenLimitedToDevicesSeesOnlyThoseEvenForAnAdmin(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.limited(t, "root", "pump-*")
	if got, want := pageIDs(t, f, c, ops.DeviceQuery{}), []string{"pump-1", "pump-2"}; !slices.Equal(got, want) {
		t.Errorf("devices through a pump-* token = %v, want %v", got, want)
	}
	if _, err := f.svc.Device(ctx, c, "valve-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(valve-1) through a pump-* token: err = %v, want ErrNotFound", err)
	}
	// Managing a device outside the pattern fails as for a missing one.
	if _, err := f.svc.RemoveDevice(ctx, c, "valve-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RemoveDevice(valve-1) through a pump-* token: err = %v, want ErrNotFound", err)
	}
	if _, err := f.svc.AddDevice(ctx, c, ops.NewDevice{ID: "valve-9"}); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("AddDevice(valve-9) through a pump-* token: err = %v, want ErrForbidden", err)
	}
	if _, err := f.svc.AddDevice(ctx, c, ops.NewDevice{ID: "pump-9"}); err != nil {
		t.Errorf("AddDevice(pump-9) through a pump-* token: %v", err)
	}
	// Importing is adding: the same limit holds.
	err := f.svc.ImportDevices(ctx, c, []store.DeviceImport{{Device: store.Device{ID: "valve-8"}, Secret: "own-secret"}}, false)
	if !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("ImportDevices(valve-8) through a pump-* token: err = %v, want ErrForbidden", err)
	}
	if _, err := f.st.Device("valve-8"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("valve-8 was imported: %v", err)
	}
}

func TestTokenCannotMakeATokenWiderThanItself(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.limited(t, "ann", "pump-*")
	for _, devices := range []string{"*", "valve-*"} {
		_, _, err := f.svc.CreateToken(ctx, c, ops.NewToken{Name: "wider", Devices: devices})
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != "devices" || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("token for %q made with a pump-* token: err = %v, want a FieldError on devices", devices, err)
		}
	}
	// Asking for no limit gets the caller's own.
	_, rec, err := f.svc.CreateToken(ctx, c, ops.NewToken{Name: "same"})
	if err != nil {
		t.Fatalf("token without a pattern made with a pump-* token: %v", err)
	}
	if rec.Devices != "pump-*" {
		t.Errorf("its pattern is %q, want the caller's pump-*", rec.Devices)
	}
}

func TestUserListsAndRevokesOnlyTheirOwnTokens(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t)
	toks, err := f.svc.Tokens(ctx, ann, "")
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	if len(toks) != 1 || toks[0].ID != f.annToken.ID {
		t.Errorf("ann's tokens = %+v, want only her own", toks)
	}
	if _, err := f.svc.Tokens(ctx, ann, "bob"); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("Tokens(bob) by ann: err = %v, want ErrForbidden", err)
	}
	if _, err := f.svc.RevokeToken(ctx, ann, f.bobToken.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ann revokes bob's token: err = %v, want ErrNotFound", err)
	}
	if left, _ := f.st.Tokens("bob"); len(left) != 1 {
		t.Errorf("bob's tokens after ann's attempt: %+v", left)
	}
	if _, err := f.svc.RevokeToken(ctx, ann, f.annToken.ID); err != nil {
		t.Errorf("ann revokes her own token: %v", err)
	}
	if n := f.accessChanged.Load(); n != 1 {
		t.Errorf("AccessChanged called %d times, want once (the revocation)", n)
	}
	// A user may make a token for themselves, not for another.
	if _, _, err := f.svc.CreateToken(ctx, ann, ops.NewToken{User: "bob", Name: "theirs"}); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("ann makes a token for bob: err = %v, want ErrForbidden", err)
	}
	if _, rec, err := f.svc.CreateToken(ctx, ann, ops.NewToken{Name: "phone"}); err != nil || rec.User != "ann" {
		t.Errorf("ann makes a token for herself: %+v, %v", rec, err)
	}
}

func TestUserReadsOnlyTheirOwnUserRecordAndAuditEvents(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t)
	if u, err := f.svc.User(ctx, ann, "ann"); err != nil || u.Name != "ann" {
		t.Errorf("User(ann) by ann = %+v, %v", u, err)
	}
	if _, err := f.svc.User(ctx, ann, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(bob) by ann: err = %v, want ErrNotFound", err)
	}

	f.st.Audit(store.AuditEvent{Kind: store.AuditLogin, User: "ann", OK: true})
	f.st.Audit(store.AuditEvent{Kind: store.AuditLogin, User: "bob", OK: true})
	es, err := f.svc.AuditEvents(ctx, ann, store.AuditFilter{})
	if err != nil {
		t.Fatalf("AuditEvents by ann: %v", err)
	}
	if len(es) != 1 || es[0].User != "ann" {
		t.Errorf("ann's audit events = %+v, want her login only", es)
	}
	if _, err := f.svc.AuditEvents(ctx, ann, store.AuditFilter{User: "bob"}); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("AuditEvents(bob) by ann: err = %v, want ErrForbidden", err)
	}
	all, err := f.svc.AuditEvents(ctx, f.admin(t), store.AuditFilter{Kind: "login"})
	if err != nil || len(all) != 2 {
		t.Errorf("logins seen by root = %+v, %v; want both", all, err)
	}
}

func TestGroupsOfAUserAreTheirOwn(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	names := func(c ops.Caller) []string {
		t.Helper()
		gs, err := f.svc.Groups(ctx, c)
		if err != nil {
			t.Fatalf("Groups: %v", err)
		}
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	if got := names(f.user(t)); !slices.Equal(got, []string{"plant-a"}) {
		t.Errorf("ann's groups = %v, want [plant-a]", got)
	}
	if got := names(f.admin(t)); !slices.Equal(got, []string{"empty", "plant-a", "plant-b"}) {
		t.Errorf("root's groups = %v, want all", got)
	}
	if _, err := f.svc.Group(ctx, f.user(t), "plant-b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Group(plant-b) by ann: err = %v, want ErrNotFound", err)
	}
}
