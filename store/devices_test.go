package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAddDeviceReturnsSecretThatChecks(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	secret, err := s.AddDevice(Device{ID: "pump-17", Groups: []string{"plant-a"}})
	if err != nil {
		t.Fatalf("AddDevice: %v", err)
	}
	d, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret)
	if err != nil {
		t.Fatalf("CheckDeviceSecret: %v", err)
	}
	if d.ID != "pump-17" || !slices.Equal(d.Groups, []string{"plant-a"}) {
		t.Errorf("CheckDeviceSecret device = %+v", d)
	}
}

func TestCheckDeviceSecretRejectsWrongAndUnknown(t *testing.T) {
	s := newTestStore(t)
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.AddDevice(Device{ID: "pump-18"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ desc, id, secret string }{
		{"wrong secret", "pump-17", secret[:len(secret)-1] + "x"},
		{"other device's secret", "pump-17", other},
		{"empty secret", "pump-17", ""},
		{"unknown id", "pump-99", secret},
		{"invalid id", "Pump-17", secret},
		{"empty id", "", secret},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if d, err := s.CheckDeviceSecret(context.Background(), tc.id, tc.secret); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("CheckDeviceSecret(%q) = %+v, %v; want ErrBadCredentials", tc.id, d, err)
			}
		})
	}
}

func TestDeviceSecretOnlyHashStored(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDevices).Get([]byte("pump-17"))
		if bytes.Contains(v, []byte(secret)) {
			t.Errorf("device record %s contains the secret", v)
		}
		if !bytes.Contains(v, []byte(hashSecret(secret))) {
			t.Errorf("device record %s lacks the secret's sha256 hash", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "reflector.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte(secret)) {
		t.Error("database file contains the device secret")
	}
}

func TestAddDeviceTwiceIsErrExists(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-17"}); !errors.Is(err, ErrExists) {
		t.Errorf("second AddDevice = %v, want ErrExists", err)
	}
}

func TestAddDeviceNormalizesListsAndSetsCreated(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a", "plant-b")
	in := Device{
		ID:       "pump-17",
		Name:     "Pump 17 — hall B",
		Groups:   []string{"plant-b", "plant-a", "plant-b"},
		Ports:    []uint16{502, 22, 80, 22},
		HTTPPort: 8080,
		Created:  time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		LastSeen: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	before := time.Now()
	if _, err := s.AddDevice(in); err != nil {
		t.Fatal(err)
	}
	d, err := s.Device("pump-17")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != in.Name || d.HTTPPort != 8080 {
		t.Errorf("Device = %+v", d)
	}
	if want := []string{"plant-a", "plant-b"}; !slices.Equal(d.Groups, want) {
		t.Errorf("Groups = %q, want %q", d.Groups, want)
	}
	if want := []uint16{22, 80, 502}; !slices.Equal(d.Ports, want) {
		t.Errorf("Ports = %v, want %v", d.Ports, want)
	}
	if d.Created.Before(before.Add(-time.Second)) {
		t.Errorf("Created = %v, want about now, not the caller's value", d.Created)
	}
	if !d.LastSeen.IsZero() {
		t.Errorf("LastSeen = %v, want zero for a new device", d.LastSeen)
	}
}

func TestDevicesSortedByID(t *testing.T) {
	s := newTestStore(t)
	for _, id := range []string{"pump-2", "pump-10", "gateway", "0-router"} {
		if _, err := s.AddDevice(Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	devices, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range devices {
		ids = append(ids, d.ID)
	}
	if want := []string{"0-router", "gateway", "pump-10", "pump-2"}; !slices.Equal(ids, want) {
		t.Errorf("Devices() ids = %q, want %q", ids, want)
	}
}

func TestRemoveDeviceRevokesSecret(t *testing.T) {
	s := newTestStore(t)
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice("pump-17"); err != nil {
		t.Fatalf("RemoveDevice: %v", err)
	}
	if _, err := s.Device("pump-17"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device after remove = %v, want ErrNotFound", err)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("CheckDeviceSecret after remove = %v, want ErrBadCredentials", err)
	}
	if err := s.RemoveDevice("pump-17"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveDevice = %v, want ErrNotFound", err)
	}
}

func TestReAddedDeviceGetsNewSecret(t *testing.T) {
	s := newTestStore(t)
	old, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice("pump-17"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", old); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old secret after re-adding = %v, want ErrBadCredentials", err)
	}
}

func TestTouchDeviceVisibleBeforeFlushAndPersistsAfterClose(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour) // no periodic flush during the test
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC)
	s.TouchDevice("pump-17", seen)

	d, err := s.Device("pump-17")
	if err != nil {
		t.Fatal(err)
	}
	if !d.LastSeen.Equal(seen) {
		t.Errorf("Device().LastSeen = %v, want %v before the flush", d.LastSeen, seen)
	}
	devices, err := s.Devices()
	if err != nil || len(devices) != 1 || !devices[0].LastSeen.Equal(seen) {
		t.Errorf("Devices() = %+v, %v; want LastSeen %v", devices, err, seen)
	}
	if got := rawLastSeen(t, s, "pump-17"); !got.IsZero() {
		t.Errorf("stored LastSeen = %v before any flush, want zero", got)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err = s.Device("pump-17")
	if err != nil {
		t.Fatal(err)
	}
	if !d.LastSeen.Equal(seen) {
		t.Errorf("LastSeen after Close and reopen = %v, want %v", d.LastSeen, seen)
	}
}

func TestTouchDeviceWrittenWithinFlushIntervalWithoutClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
			t.Fatal(err)
		}
		seen := time.Now()
		s.TouchDevice("pump-17", seen)
		time.Sleep(flushInterval)
		synctest.Wait() // the writer has woken, flushed and gone back to sleep
		if got := rawLastSeen(t, s, "pump-17"); !got.Equal(seen) {
			t.Errorf("stored LastSeen = %v one interval after the touch, want %v", got, seen)
		}
	})
}

func TestTouchDeviceNeverGoesBackInTime(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	newer := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s.TouchDevice("pump-17", newer)
	if err := s.lastSeen.flush(); err != nil {
		t.Fatal(err)
	}
	s.TouchDevice("pump-17", newer.Add(-time.Minute))
	if err := s.lastSeen.flush(); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Device("pump-17")
	if !d.LastSeen.Equal(newer) {
		t.Errorf("LastSeen = %v after an older touch, want %v", d.LastSeen, newer)
	}
	if got := rawLastSeen(t, s, "pump-17"); !got.Equal(newer) {
		t.Errorf("stored LastSeen = %v, want %v", got, newer)
	}
}

func TestTouchDeviceOfUnknownOrRemovedDeviceCreatesNoRecord(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDevice("pump-17"); err != nil {
		t.Fatal(err)
	}
	s.TouchDevice("pump-17", time.Now())
	s.TouchDevice("ghost", time.Now())
	s.TouchDevice("Not A Label", time.Now())
	if err := s.lastSeen.flush(); err != nil {
		t.Fatal(err)
	}
	devices, err := s.Devices()
	if err != nil || len(devices) != 0 {
		t.Errorf("Devices() = %+v, %v; want none", devices, err)
	}
	if n := held(s.lastSeen); n != 0 {
		t.Errorf("%d last-seen entries kept for devices that do not exist", n)
	}
	// A device added later under that id starts unseen.
	if _, err := s.AddDevice(Device{ID: "ghost"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Device("ghost"); !d.LastSeen.IsZero() {
		t.Errorf("new device LastSeen = %v, want zero", d.LastSeen)
	}
}

func TestTouchDeviceAfterCloseIsIgnored(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.TouchDevice("pump-17", time.Now()) // must neither block nor panic
}

func TestCanAccess(t *testing.T) {
	pump := Device{ID: "pump-17", Groups: []string{"plant-a", "plant-b"}}
	orphan := Device{ID: "orphan"}
	for _, tc := range []struct {
		desc string
		user User
		dev  Device
		want bool
	}{
		{"admin without groups", User{Role: RoleAdmin}, pump, true},
		{"admin, device without groups", User{Role: RoleAdmin}, orphan, true},
		{"user sharing a group", User{Role: RoleUser, Groups: []string{"plant-b"}}, pump, true},
		{"user sharing one of several", User{Role: RoleUser, Groups: []string{"ops", "plant-a"}}, pump, true},
		{"user in other groups", User{Role: RoleUser, Groups: []string{"plant-c"}}, pump, false},
		{"user without groups", User{Role: RoleUser}, pump, false},
		{"user, device without groups", User{Role: RoleUser, Groups: []string{"plant-a"}}, orphan, false},
		{"group names are case-sensitive", User{Role: RoleUser, Groups: []string{"Plant-A"}}, pump, false},
		{"unknown role with shared group", User{Role: "root", Groups: []string{"plant-a"}}, pump, true},
		{"unknown role without shared group", User{Role: "root"}, pump, false},
		{"zero user", User{}, pump, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := CanAccess(tc.user, tc.dev); got != tc.want {
				t.Errorf("CanAccess(%+v, %+v) = %v, want %v", tc.user, tc.dev, got, tc.want)
			}
		})
	}
}

func TestInvalidNamesRejected(t *testing.T) {
	s := newTestStore(t)
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		desc string
		op   func() error
		ok   bool
	}{
		{"user name 64 chars", func() error { return s.AddUser(long(64), "pw", RoleUser, nil) }, true},
		{"user name of every allowed kind", func() error { return s.AddUser("A.b_c@d-9", "pw", RoleUser, nil) }, true},
		{"user name empty", func() error { return s.AddUser("", "pw", RoleUser, nil) }, false},
		{"user name 65 chars", func() error { return s.AddUser(long(65), "pw", RoleUser, nil) }, false},
		{"user name with space", func() error { return s.AddUser("a b", "pw", RoleUser, nil) }, false},
		{"user name with colon", func() error { return s.AddUser("a:b", "pw", RoleUser, nil) }, false},
		{"user name with slash", func() error { return s.AddUser("a/b", "pw", RoleUser, nil) }, false},
		{"user name with NUL", func() error { return s.AddUser("a\x00b", "pw", RoleUser, nil) }, false},
		{"user name non-ASCII", func() error { return s.AddUser("jürgen", "pw", RoleUser, nil) }, false},
		{"role empty", func() error { return s.AddUser("u1", "pw", "", nil) }, false},
		{"role Admin", func() error { return s.AddUser("u2", "pw", "Admin", nil) }, false},
		{"role root", func() error { return s.AddUser("u3", "pw", "root", nil) }, false},
		{"password empty", func() error { return s.AddUser("u4", "", RoleUser, nil) }, false},
		{"group empty", func() error { return s.AddUser("u5", "pw", RoleUser, []string{""}) }, false},
		{"group with @", func() error { return s.AddUser("u6", "pw", RoleUser, []string{"a@b"}) }, false},
		{"group 65 chars", func() error { return s.AddUser("u7", "pw", RoleUser, []string{long(65)}) }, false},
		{"device id 63 chars", func() error { return addDevice(s, Device{ID: long(63)}) }, true},
		{"device id digits and hyphen", func() error { return addDevice(s, Device{ID: "0-9"}) }, true},
		{"device id empty", func() error { return addDevice(s, Device{ID: ""}) }, false},
		{"device id 64 chars", func() error { return addDevice(s, Device{ID: long(64)}) }, false},
		{"device id leading hyphen", func() error { return addDevice(s, Device{ID: "-pump"}) }, false},
		{"device id trailing hyphen", func() error { return addDevice(s, Device{ID: "pump-"}) }, false},
		{"device id upper case", func() error { return addDevice(s, Device{ID: "Pump"}) }, false},
		{"device id with dot", func() error { return addDevice(s, Device{ID: "pump.17"}) }, false},
		{"device id with underscore", func() error { return addDevice(s, Device{ID: "pump_17"}) }, false},
		{"device port 0", func() error { return addDevice(s, Device{ID: "d1", Ports: []uint16{22, 0}}) }, false},
		{"device group invalid", func() error { return addDevice(s, Device{ID: "d2", Groups: []string{"a b"}}) }, false},
		{"device name with newline", func() error { return addDevice(s, Device{ID: "d3", Name: "a\nb"}) }, false},
		{"device name not UTF-8", func() error { return addDevice(s, Device{ID: "d4", Name: "\xff"}) }, false},
		{"device name too long", func() error { return addDevice(s, Device{ID: "d5", Name: long(129)}) }, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.op()
			switch {
			case tc.ok && err != nil:
				t.Errorf("rejected: %v", err)
			case !tc.ok && !errors.Is(err, ErrInvalid):
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
	users, _ := s.Users()
	devices, _ := s.Devices()
	if len(users) != 2 || len(devices) != 2 {
		t.Errorf("stored %d users and %d devices, want only the 2 valid of each", len(users), len(devices))
	}
}

// Exercised under -race: credential checks, touches, reads and writes at
// once.
func TestConcurrentUseIsSafe(t *testing.T) {
	s, err := open(t.TempDir(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addGroups(t, s, "g")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"g"}); err != nil {
		t.Fatal(err)
	}
	secret, err := s.AddDevice(Device{ID: "pump-17", Groups: []string{"g"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := s.CheckPassword(context.Background(), "alice", "pw"); err != nil {
					t.Error(err)
				}
				if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
					t.Error(err)
				}
				s.TouchDevice("pump-17", time.Now())
				if _, err := s.Devices(); err != nil {
					t.Error(err)
				}
				if i == 0 && j%5 == 0 {
					if err := s.SetPassword("alice", "pw"); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func addDevice(s *Store, d Device) error {
	_, err := s.AddDevice(d)
	return err
}

// rawLastSeen reads the stored last-seen time, bypassing the in-memory one.
func rawLastSeen(t *testing.T, s *Store, id string) time.Time {
	t.Helper()
	return rawDevice(t, s, id).LastSeen
}

func TestAddDeviceEnforcesGroupQuota(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	if err := s.AddGroup(Group{Name: "plant-a", MaxDevices: 2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"pump-1", "pump-2"} {
		if err := addDevice(s, Device{ID: id, Groups: []string{"plant-a"}}); err != nil {
			t.Fatalf("AddDevice %s within the quota: %v", id, err)
		}
	}
	err := addDevice(s, Device{ID: "pump-3", Groups: []string{"plant-a"}})
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("AddDevice past the quota = %v, want ErrQuota", err)
	}
	for _, part := range []string{`"pump-3"`, `"plant-a"`, "at most 2"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	// One full group refuses the device, whatever its other groups.
	if err := addDevice(s, Device{ID: "pump-4", Groups: []string{"ops", "plant-a"}}); !errors.Is(err, ErrQuota) {
		t.Errorf("AddDevice into a free and a full group = %v, want ErrQuota", err)
	}
	for _, id := range []string{"pump-3", "pump-4"} {
		if _, err := s.Device(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("refused device %s was stored: %v", id, err)
		}
	}
	// Removing a member makes room; a group without a quota has no limit.
	if err := s.RemoveDevice("pump-1"); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-3", Groups: []string{"plant-a"}}); err != nil {
		t.Errorf("AddDevice after a member left: %v", err)
	}
	for i := range 5 {
		if err := addDevice(s, Device{ID: fmt.Sprint("ops-", i), Groups: []string{"ops"}}); err != nil {
			t.Errorf("AddDevice to a group without quota: %v", err)
		}
	}
}

func TestUpdateDeviceEnforcesGroupsAndQuota(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	if err := s.AddGroup(Group{Name: "plant-a", MaxDevices: 1}); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-1", Groups: []string{"plant-a"}}); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-2", Groups: []string{"ops"}}); err != nil {
		t.Fatal(err)
	}

	full := []string{"plant-a"}
	if _, err := s.UpdateDevice("pump-2", DeviceUpdate{Groups: &full}); !errors.Is(err, ErrQuota) {
		t.Errorf("UpdateDevice into a full group = %v, want ErrQuota", err)
	}
	missing := []string{"ops", "plant-z"}
	if _, err := s.UpdateDevice("pump-2", DeviceUpdate{Groups: &missing}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateDevice into a missing group = %v, want ErrNotFound", err)
	}
	if d, _ := s.Device("pump-2"); !slices.Equal(d.Groups, []string{"ops"}) {
		t.Errorf("Groups = %q after refused updates, want [ops]", d.Groups)
	}
	// The device in the full group is not counted against itself.
	both := []string{"plant-a", "ops"}
	d, err := s.UpdateDevice("pump-1", DeviceUpdate{Groups: &both})
	if err != nil {
		t.Fatalf("UpdateDevice of the full group's member: %v", err)
	}
	if want := []string{"ops", "plant-a"}; !slices.Equal(d.Groups, want) {
		t.Errorf("Groups = %q, want %q", d.Groups, want)
	}
	// Leaving makes room for another.
	none := []string{}
	if _, err := s.UpdateDevice("pump-1", DeviceUpdate{Groups: &none}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateDevice("pump-2", DeviceUpdate{Groups: &full}); err != nil {
		t.Errorf("UpdateDevice into a group with room: %v", err)
	}
}

func TestUpdateDeviceChangesOnlyGivenFields(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a", "plant-b")
	secret, err := s.AddDevice(Device{ID: "pump-17", Name: "Pump", Groups: []string{"plant-a"}, Ports: []uint16{22}, HTTPPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s.TouchDevice("pump-17", seen)
	before, _ := s.Device("pump-17")

	name := "Pump 17 — hall B"
	d, err := s.UpdateDevice("pump-17", DeviceUpdate{Name: &name})
	if err != nil {
		t.Fatalf("UpdateDevice name: %v", err)
	}
	want := before
	want.Name = name
	assertDeviceEqual(t, d, want)

	groups := []string{"plant-b", "plant-a", "plant-b"}
	ports := []uint16{502, 22, 502}
	httpPort := uint16(8080)
	d, err = s.UpdateDevice("pump-17", DeviceUpdate{Groups: &groups, Ports: &ports, HTTPPort: &httpPort})
	if err != nil {
		t.Fatalf("UpdateDevice groups, ports, HTTP port: %v", err)
	}
	want.Groups, want.Ports, want.HTTPPort = []string{"plant-a", "plant-b"}, []uint16{22, 502}, 8080
	assertDeviceEqual(t, d, want)
	got, _ := s.Device("pump-17")
	assertDeviceEqual(t, got, want)
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Errorf("secret after UpdateDevice: %v", err)
	}
	noPorts := []uint16{}
	if d, err = s.UpdateDevice("pump-17", DeviceUpdate{Ports: &noPorts}); err != nil || len(d.Ports) != 0 {
		t.Errorf("UpdateDevice to the agent's ports = %+v, %v; want no ports", d, err)
	}
}

func TestUpdateDeviceRejectsInvalid(t *testing.T) {
	s := newTestStore(t)
	if err := addDevice(s, Device{ID: "pump-17", Name: "Pump"}); err != nil {
		t.Fatal(err)
	}
	badName := "a\nb"
	badGroups := []string{"a b"}
	badPorts := []uint16{0}
	for _, tc := range []struct {
		desc string
		u    DeviceUpdate
	}{
		{"name with newline", DeviceUpdate{Name: &badName}},
		{"group invalid", DeviceUpdate{Groups: &badGroups}},
		{"port 0", DeviceUpdate{Ports: &badPorts}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if _, err := s.UpdateDevice("pump-17", tc.u); !errors.Is(err, ErrInvalid) {
				t.Errorf("UpdateDevice = %v, want ErrInvalid", err)
			}
		})
	}
	if d, _ := s.Device("pump-17"); d.Name != "Pump" {
		t.Errorf("Name = %q after refused updates, want Pump", d.Name)
	}
	name := "x"
	for _, id := range []string{"pump-99", "Pump-17", ""} {
		if _, err := s.UpdateDevice(id, DeviceUpdate{Name: &name}); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateDevice(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestRotateDeviceSecretReplacesOldAtOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.RotateDeviceSecret("pump-17")
	if err != nil {
		t.Fatalf("RotateDeviceSecret: %v", err)
	}
	if secret == old || len(secret) != len(old) {
		t.Errorf("new secret %d characters, same as old: %v", len(secret), secret == old)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", old); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old secret after rotation = %v, want ErrBadCredentials", err)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Errorf("new secret after rotation: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", old); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old secret after reopen = %v, want ErrBadCredentials", err)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Errorf("new secret after reopen: %v", err)
	}
	for _, id := range []string{"pump-99", "Pump-17"} {
		if _, err := s.RotateDeviceSecret(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("RotateDeviceSecret(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestDisabledDeviceIsRefusedUntilEnabled(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceDisabled("pump-17", true); err != nil {
		t.Fatalf("SetDeviceDisabled: %v", err)
	}
	checkDisabled := func(when string) {
		t.Helper()
		_, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret)
		if !errors.Is(err, ErrDisabled) || errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: CheckDeviceSecret = %v, want ErrDisabled only", when, err)
		}
		// Without the secret, a disabled device looks like any other.
		_, err = s.CheckDeviceSecret(context.Background(), "pump-17", secret+"x")
		if !errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrDisabled) {
			t.Errorf("%s: CheckDeviceSecret with a wrong secret = %v, want ErrBadCredentials only", when, err)
		}
		if d, err := s.Device("pump-17"); err != nil || !d.Disabled {
			t.Errorf("%s: Device = %+v, %v; want Disabled", when, d, err)
		}
	}
	checkDisabled("disabled")
	// Other changes keep the device disabled.
	name := "Pump 17"
	if d, err := s.UpdateDevice("pump-17", DeviceUpdate{Name: &name}); err != nil || !d.Disabled {
		t.Errorf("UpdateDevice of a disabled device = %+v, %v; want still Disabled", d, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDisabled("after reopen")
	if err := s.SetDeviceDisabled("pump-17", false); err != nil {
		t.Fatalf("SetDeviceDisabled false: %v", err)
	}
	if d, err := s.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil || d.Disabled {
		t.Errorf("CheckDeviceSecret after enabling = %+v, %v; want the enabled device", d, err)
	}
	for _, id := range []string{"pump-99", "Pump-17"} {
		if err := s.SetDeviceDisabled(id, true); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetDeviceDisabled(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestDeviceErrorsNeverContainSecret(t *testing.T) {
	s := newTestStore(t)
	secret, err := s.AddDevice(Device{ID: "pump-17"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceDisabled("pump-17", true); err != nil {
		t.Fatal(err)
	}
	for _, try := range []string{secret, secret + "x"} {
		if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", try); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("CheckDeviceSecret error %v contains the secret (or is nil)", err)
		}
	}
}

func TestDeviceHTTPTLSIsStoredAndUpdatedOnItsOwn(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-17", HTTPPort: 443, HTTPTLS: true}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device("pump-17"); err != nil || !d.HTTPTLS || d.HTTPPort != 443 {
		t.Fatalf("Device after AddDevice = %+v, %v; want HTTPS on 443", d, err)
	}
	off, port := false, uint16(8080)
	d, err := s.UpdateDevice("pump-17", DeviceUpdate{HTTPPort: &port})
	if err != nil || !d.HTTPTLS {
		t.Fatalf("UpdateDevice of the port alone = %+v, %v; want HTTPTLS kept", d, err)
	}
	if d, err = s.UpdateDevice("pump-17", DeviceUpdate{HTTPTLS: &off}); err != nil || d.HTTPTLS || d.HTTPPort != 8080 {
		t.Fatalf("UpdateDevice HTTPTLS off = %+v, %v", d, err)
	}
	if d, err = s.Device("pump-17"); err != nil || d.HTTPTLS {
		t.Fatalf("Device after HTTPTLS off = %+v, %v", d, err)
	}
	// Devices decodes the stored records too: the flag round-trips.
	on := true
	if _, err := s.UpdateDevice("pump-17", DeviceUpdate{HTTPTLS: &on}); err != nil {
		t.Fatal(err)
	}
	devices, err := s.Devices()
	if err != nil || len(devices) != 1 || !devices[0].HTTPTLS {
		t.Fatalf("Devices = %+v, %v; want one with HTTPTLS", devices, err)
	}
}
