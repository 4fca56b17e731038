package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAddGroupThenGroupReturnsIt(t *testing.T) {
	s := newTestStore(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	setClock(s, now)
	if err := s.AddGroup(Group{Name: "plant-a", MaxDevices: 5, Users: 7, Devices: 9, Created: now.AddDate(-1, 0, 0)}); err != nil {
		t.Fatalf("AddGroup: %v", err)
	}
	g, err := s.Group("plant-a")
	if err != nil {
		t.Fatalf("Group: %v", err)
	}
	want := Group{Name: "plant-a", MaxDevices: 5, Created: now.UTC()}
	if g != want {
		t.Errorf("Group = %+v, want %+v (counts are counted, Created is now)", g, want)
	}
}

func TestAddGroupTwiceIsErrExists(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	for _, name := range []string{"plant-a", "Plant-A", "PLANT-A"} {
		if err := s.AddGroup(Group{Name: name}); !errors.Is(err, ErrExists) {
			t.Errorf("AddGroup(%q) with plant-a present = %v, want ErrExists", name, err)
		}
	}
	groups, err := s.Groups()
	if err != nil || len(groups) != 1 {
		t.Errorf("Groups() = %+v, %v; want only plant-a", groups, err)
	}
}

func TestAddGroupRejectsInvalid(t *testing.T) {
	s := newTestStore(t)
	for _, tc := range []struct {
		desc string
		g    Group
	}{
		{"empty name", Group{}},
		{"name with space", Group{Name: "plant a"}},
		{"name with @", Group{Name: "a@b"}},
		{"name with slash", Group{Name: "a/b"}},
		{"name non-ASCII", Group{Name: "größe"}},
		{"name with NUL", Group{Name: "a\x00b"}},
		{"name 65 chars", Group{Name: strings.Repeat("g", 65)}},
		{"negative quota", Group{Name: "plant-a", MaxDevices: -1}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if err := s.AddGroup(tc.g); !errors.Is(err, ErrInvalid) {
				t.Errorf("AddGroup(%+v) = %v, want ErrInvalid", tc.g, err)
			}
		})
	}
	if err := s.AddGroup(Group{Name: strings.Repeat("g", 64)}); err != nil {
		t.Errorf("AddGroup with a 64-character name: %v", err)
	}
	if err := s.AddGroup(Group{Name: "A.b_c-9"}); err != nil {
		t.Errorf("AddGroup with every allowed kind of character: %v", err)
	}
}

func TestGroupUnknownIsNotFound(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"plant-a", "", "a b", strings.Repeat("x", 1000)} {
		if _, err := s.Group(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Group(%.20q) = %v, want ErrNotFound", name, err)
		}
	}
}

func TestGroupsSortedByNameWithMemberCounts(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-b", "ops", "plant-a", "empty")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"plant-a", "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("bob", "pw", RoleUser, []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []Device{
		{ID: "pump-1", Groups: []string{"plant-a"}},
		{ID: "pump-2", Groups: []string{"plant-a", "plant-b"}},
		{ID: "pump-3", Groups: []string{"plant-b"}},
		{ID: "loner"},
	} {
		if err := addDevice(s, d); err != nil {
			t.Fatal(err)
		}
	}
	groups, err := s.Groups()
	if err != nil {
		t.Fatalf("Groups: %v", err)
	}
	type counts struct {
		name           string
		users, devices int
	}
	var got []counts
	for _, g := range groups {
		got = append(got, counts{g.Name, g.Users, g.Devices})
	}
	want := []counts{{"empty", 0, 0}, {"ops", 1, 0}, {"plant-a", 2, 2}, {"plant-b", 0, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("Groups() = %+v, want %+v", got, want)
	}
	g, err := s.Group("plant-a")
	if err != nil || g.Users != 2 || g.Devices != 2 {
		t.Errorf("Group(plant-a) = %+v, %v; want 2 users and 2 devices", g, err)
	}
}

func TestSetGroupMaxDevices(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	if err := s.SetGroupMaxDevices("plant-a", 3); err != nil {
		t.Fatalf("SetGroupMaxDevices: %v", err)
	}
	if g, _ := s.Group("plant-a"); g.MaxDevices != 3 {
		t.Errorf("MaxDevices = %d, want 3", g.MaxDevices)
	}
	if err := s.SetGroupMaxDevices("plant-a", 0); err != nil {
		t.Fatalf("SetGroupMaxDevices 0: %v", err)
	}
	if g, _ := s.Group("plant-a"); g.MaxDevices != 0 {
		t.Errorf("MaxDevices = %d, want 0", g.MaxDevices)
	}
	if err := s.SetGroupMaxDevices("plant-a", -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetGroupMaxDevices -1 = %v, want ErrInvalid", err)
	}
	for _, name := range []string{"plant-b", "", "a b"} {
		if err := s.SetGroupMaxDevices(name, 1); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetGroupMaxDevices(%q) = %v, want ErrNotFound", name, err)
		}
	}
}

func TestQuotaBelowMemberCountStopsOnlyNewDevices(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a", "ops")
	for _, id := range []string{"pump-1", "pump-2", "pump-3"} {
		if err := addDevice(s, Device{ID: id, Groups: []string{"plant-a"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetGroupMaxDevices("plant-a", 2); err != nil {
		t.Fatalf("SetGroupMaxDevices below the member count: %v", err)
	}
	if g, _ := s.Group("plant-a"); g.Devices != 3 {
		t.Errorf("Devices = %d after lowering the quota, want all 3 kept", g.Devices)
	}
	if err := addDevice(s, Device{ID: "pump-4", Groups: []string{"plant-a"}}); !errors.Is(err, ErrQuota) {
		t.Errorf("AddDevice to an over-full group = %v, want ErrQuota", err)
	}
	// Members stay members when they change otherwise, even their groups.
	ports := []uint16{22}
	if _, err := s.UpdateDevice("pump-1", DeviceUpdate{Ports: &ports}); err != nil {
		t.Errorf("UpdateDevice ports of a member of an over-full group: %v", err)
	}
	groups := []string{"ops", "plant-a"}
	if _, err := s.UpdateDevice("pump-2", DeviceUpdate{Groups: &groups}); err != nil {
		t.Errorf("UpdateDevice adding a group to a member of an over-full group: %v", err)
	}
}

func TestRemoveGroupRefusedWhileNamed(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	if err := s.AddUser("alice", "pw", RoleUser, []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("bob", "pw", RoleUser, []string{"plant-a"}); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-1", Groups: []string{"plant-a"}}); err != nil {
		t.Fatal(err)
	}
	_, keyRec, err := s.CreateEnrollKey(EnrollKey{Group: "plant-a"})
	if err != nil {
		t.Fatal(err)
	}

	err = s.RemoveGroup("plant-a")
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("RemoveGroup of a group in use = %v, want ErrNotEmpty", err)
	}
	for _, part := range []string{`"plant-a"`, "2 users", "1 device", "1 enrolment key"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("RemoveGroup error %q does not say %q", err, part)
		}
	}

	// Each kind of member alone holds the group.
	steps := []struct {
		desc   string
		remove func() error
	}{
		{"users", func() error { return errors.Join(s.RemoveUser("alice"), s.RemoveUser("bob")) }},
		{"device", func() error { return s.RemoveDevice("pump-1") }},
		{"enrolment key", func() error { return s.RevokeEnrollKey(keyRec.ID) }},
	}
	for i, step := range steps {
		if err := step.remove(); err != nil {
			t.Fatalf("remove %s: %v", step.desc, err)
		}
		err := s.RemoveGroup("plant-a")
		if last := i == len(steps)-1; !last && !errors.Is(err, ErrNotEmpty) {
			t.Errorf("RemoveGroup after removing the %s = %v, want ErrNotEmpty", step.desc, err)
		} else if last && err != nil {
			t.Errorf("RemoveGroup of an unused group: %v", err)
		}
	}
	if _, err := s.Group("plant-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Group after RemoveGroup = %v, want ErrNotFound", err)
	}
	if err := s.RemoveGroup("plant-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveGroup = %v, want ErrNotFound", err)
	}
}

func TestRemoveGroupCountsMembersByExactName(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a", "plant-ab")
	if err := addDevice(s, Device{ID: "pump-1", Groups: []string{"plant-ab"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveGroup("plant-a"); err != nil {
		t.Errorf("RemoveGroup of a group only a similar name is used by: %v", err)
	}
}

func TestRemoveGroupUnknownIsNotFound(t *testing.T) {
	s := newTestStore(t)
	for _, name := range []string{"plant-a", "", "a b"} {
		if err := s.RemoveGroup(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("RemoveGroup(%q) = %v, want ErrNotFound", name, err)
		}
	}
}

func TestDeviceMayOnlyJoinExistingGroups(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	err := addDevice(s, Device{ID: "pump-1", Groups: []string{"plant-a", "plant-b"}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"plant-b"`) {
		t.Errorf("AddDevice in a missing group = %v, want ErrNotFound naming plant-b", err)
	}
	if _, err := s.Device("pump-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("device stored although its group is missing: %v", err)
	}
}

func TestGroupsPersistAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	addGroups(t, s, "plant-a")
	if err := s.AddGroup(Group{Name: "plant-b", MaxDevices: 1}); err != nil {
		t.Fatal(err)
	}
	if err := addDevice(s, Device{ID: "pump-1", Groups: []string{"plant-b"}}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Groups()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Groups()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, func(a, b Group) bool {
		return a.Name == b.Name && a.MaxDevices == b.MaxDevices && a.Created.Equal(b.Created) &&
			a.Users == b.Users && a.Devices == b.Devices
	}) {
		t.Errorf("Groups() after reopen = %+v, want %+v", got, want)
	}
	if err := addDevice(s, Device{ID: "pump-2", Groups: []string{"plant-b"}}); !errors.Is(err, ErrQuota) {
		t.Errorf("AddDevice past a quota set before reopening = %v, want ErrQuota", err)
	}
}

// Exercised under -race: the quota holds when devices are added at once.
func TestGroupQuotaHoldsUnderConcurrentAdds(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddGroup(Group{Name: "plant-a", MaxDevices: 3}); err != nil {
		t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, full int
	)
	for i := range 12 {
		wg.Go(func() {
			err := addDevice(s, Device{ID: fmt.Sprint("pump-", i), Groups: []string{"plant-a"}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrQuota):
				full++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 3 || full != 9 {
		t.Errorf("%d adds succeeded and %d hit the quota, want 3 and 9", ok, full)
	}
	if g, _ := s.Group("plant-a"); g.Devices != 3 {
		t.Errorf("group has %d devices, want 3", g.Devices)
	}
}

func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 users"}, {1, "1 user"}, {2, "2 users"}} {
		if got := plural(tc.n, "user"); got != tc.want {
			t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
