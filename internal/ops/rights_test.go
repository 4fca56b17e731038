package ops_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// adminOp is one admin operation on the fixture. The operations act on
// different records, so they run one after another on one fixture.
type adminOp struct {
	name string
	// kind is the audit event the operation writes when it succeeds, ""
	// for a read.
	kind string
	// events is how many events of kind it writes; 0 means 1.
	events int
	// access: the operation may take access away and must call
	// Config.AccessChanged (once); otherwise it must not.
	access bool
	run    func(ctx context.Context, f *fixture, c ops.Caller) error
}

func ptr[T any](v T) *T { return &v }

var adminOps = []adminOp{
	{name: "AddDevice", kind: store.AuditDeviceAdd, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.AddDevice(ctx, c, ops.NewDevice{ID: "new-1", Groups: []string{"plant-a"}})
		return err
	}},
	{name: "UpdateDevice", kind: store.AuditDeviceSet, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, _, err := f.svc.UpdateDevice(ctx, c, "valve-1", store.DeviceUpdate{Name: ptr("Side Valve")})
		return err
	}},
	{name: "RotateDeviceSecret", kind: store.AuditRotate, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.RotateDeviceSecret(ctx, c, "pump-1")
		return err
	}},
	{name: "SetDeviceDisabled", kind: store.AuditDisable, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.SetDeviceDisabled(ctx, c, "valve-2", true)
		return err
	}},
	{name: "RemoveDevice", kind: store.AuditDeviceRm, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.RemoveDevice(ctx, c, "gate-1")
		return err
	}},
	{name: "ImportDevices", kind: store.AuditDeviceAdd, events: 2, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		return f.svc.ImportDevices(ctx, c, []store.DeviceImport{
			{Device: store.Device{ID: "imported-1", Groups: []string{"plant-b"}}, Secret: "own-secret-1"},
			{Device: store.Device{ID: "imported-2"}, Secret: `own\secret-2`},
		}, false)
	}},
	{name: "CutStream", kind: store.AuditStreamCut, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.CutStream(ctx, c, "pump-1", "s-ann")
		return err
	}},
	{name: "Users", run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.Users(ctx, c)
		return err
	}},
	{name: "AddUser", kind: store.AuditUserAdd, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, _, err := f.svc.AddUser(ctx, c, ops.NewUser{Name: "dora", Password: "dora-password-1", Groups: []string{"plant-a"}})
		return err
	}},
	{name: "UpdateUser", kind: store.AuditUserSet, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, _, err := f.svc.UpdateUser(ctx, c, "ann", ops.UserUpdate{Groups: ptr([]string{"plant-b", "plant-a"})})
		return err
	}},
	{name: "SetPassword", kind: store.AuditUserSet, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.SetPassword(ctx, c, "bob", "")
		return err
	}},
	{name: "RemoveUser", kind: store.AuditUserRm, access: true, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		return f.svc.RemoveUser(ctx, c, "carl")
	}},
	{name: "AddGroup", kind: store.AuditGroupAdd, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.AddGroup(ctx, c, "plant-c", 3)
		return err
	}},
	{name: "SetGroupMaxDevices", kind: store.AuditGroupSet, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.SetGroupMaxDevices(ctx, c, "plant-b", 10)
		return err
	}},
	{name: "RemoveGroup", kind: store.AuditGroupRm, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		return f.svc.RemoveGroup(ctx, c, "empty")
	}},
	{name: "EnrollKeys", run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.EnrollKeys(ctx, c)
		return err
	}},
	{name: "CreateEnrollKey", kind: store.AuditEnrollKey, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, _, err := f.svc.CreateEnrollKey(ctx, c, store.EnrollKey{Group: "plant-b", Max: 5})
		return err
	}},
	{name: "RemoveEnrollKey", kind: store.AuditEnrollRm, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		return f.svc.RemoveEnrollKey(ctx, c, f.enrollKey.ID)
	}},
	{name: "DisableTOTP with force", kind: store.AuditTOTP, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.DisableTOTP(ctx, c, "bob", "", true)
		return err
	}},
}

// backupOp backs the database up into a fresh directory.
func backupOp(t *testing.T) adminOp {
	return adminOp{name: "Backup", kind: store.AuditBackup, run: func(ctx context.Context, f *fixture, c ops.Caller) error {
		_, err := f.svc.Backup(ctx, c, filepath.Join(t.TempDir(), "backup.db"))
		return err
	}}
}

// storeState is everything an operation could change, as the store reads
// it back.
type storeState struct {
	Users   []store.User
	Groups  []store.Group
	Devices []store.Device
	Tokens  []store.Token
	Keys    []store.EnrollKey
	Events  []store.AuditEvent
}

func snapshot(t *testing.T, f *fixture) storeState {
	t.Helper()
	var s storeState
	var errs [6]error
	s.Users, errs[0] = f.st.Users()
	s.Groups, errs[1] = f.st.Groups()
	s.Devices, errs[2] = f.st.Devices()
	s.Tokens, errs[3] = f.st.Tokens("")
	s.Keys, errs[4] = f.st.EnrollKeys()
	s.Events, errs[5] = f.st.AuditEvents(store.AuditFilter{})
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

func TestUserIsForbiddenEveryAdminOperationAndNothingChanges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ann := f.user(t)
	before := snapshot(t, f)
	for _, op := range append(adminOps, backupOp(t)) {
		if err := op.run(ctx, f, ann); !errors.Is(err, ops.ErrForbidden) {
			t.Errorf("%s by a user: err = %v, want ErrForbidden", op.name, err)
		}
	}
	if after := snapshot(t, f); !reflect.DeepEqual(before, after) {
		t.Errorf("the store changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if n := f.accessChanged.Load(); n != 0 {
		t.Errorf("AccessChanged called %d times", n)
	}
	// Secrets and passwords are outside the snapshot: check them.
	if _, err := f.st.CheckDeviceSecret(ctx, "pump-1", f.secrets["pump-1"]); err != nil {
		t.Errorf("pump-1's secret stopped working: %v", err)
	}
	if _, err := f.st.CheckPassword(ctx, "bob", bobPassword); err != nil {
		t.Errorf("bob's password stopped working: %v", err)
	}
	if f.pump1.closed.Load() {
		t.Error("pump-1's tunnel was closed")
	}
	if got := f.streams.Streams(""); len(got) != 2 {
		t.Errorf("streams left open: %v, want both", got)
	}
}

// TestAdminAndLocalSucceedEachAuditedOnceWithTheCallerAsActor runs every
// admin operation as an admin of the REST API and as the control socket:
// each succeeds, writes its audit event once with the caller as actor and
// the caller's address as client, and calls AccessChanged exactly when it
// may take access away.
func TestAdminAndLocalSucceedEachAuditedOnceWithTheCallerAsActor(t *testing.T) {
	callers := []struct {
		name               string
		caller             func(t *testing.T, f *fixture) ops.Caller
		wantActor, wantClt string
	}{
		{"admin", func(t *testing.T, f *fixture) ops.Caller { return f.admin(t) }, "root", adminAddr.String()},
		{"local", func(*testing.T, *fixture) ops.Caller { return ops.Local() }, ops.LocalActor, ""},
	}
	for _, cc := range callers {
		t.Run(cc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			c := cc.caller(t, f)
			list := adminOps
			if c.Local {
				list = append(list, backupOp(t))
			}
			for _, op := range list {
				seen := len(f.events(t))
				calls := f.accessChanged.Load()
				if err := op.run(ctx, f, c); err != nil {
					t.Errorf("%s: %v", op.name, err)
					continue
				}
				fresh := f.events(t)[seen:]
				want := op.events
				if want == 0 && op.kind != "" {
					want = 1
				}
				if len(fresh) != want {
					t.Errorf("%s wrote %d audit events, want %d: %+v", op.name, len(fresh), want, fresh)
				}
				for _, e := range fresh {
					if e.Kind != op.kind || e.Actor != cc.wantActor || e.Client != cc.wantClt || !e.OK {
						t.Errorf("%s audited %+v, want kind %q, actor %q, client %q, OK", op.name, e, op.kind, cc.wantActor, cc.wantClt)
					}
				}
				wantCalls := int64(0)
				if op.access {
					wantCalls = 1
				}
				if got := f.accessChanged.Load() - calls; got != wantCalls {
					t.Errorf("%s called AccessChanged %d times, want %d", op.name, got, wantCalls)
				}
			}
		})
	}
}

func TestOnlyLocalMayBackUp(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	if _, err := f.svc.Backup(ctx, f.admin(t), filepath.Join(dir, "by-admin.db")); !errors.Is(err, ops.ErrForbidden) {
		t.Errorf("backup by an admin of the API: err = %v, want ErrForbidden", err)
	}
	// The copy is a store of its own, named as Open expects it.
	copyDir := t.TempDir()
	size, err := f.svc.Backup(ctx, ops.Local(), filepath.Join(copyDir, "reflector.db"))
	if err != nil || size <= 0 {
		t.Fatalf("backup by local = %d, %v", size, err)
	}
	copied, err := store.Open(copyDir)
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer copied.Close()
	if _, err := copied.User("ann"); err != nil {
		t.Errorf("the backup lacks ann: %v", err)
	}
}
