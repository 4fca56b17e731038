package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group is a set of users and devices: a user reaches the devices of the
// groups they share. Users and devices may only join groups that exist.
type Group struct {
	Name       string
	MaxDevices int // device quota; 0 for none
	Created    time.Time
	Users      int // members, counted when read
	Devices    int
}

// groupRecord is the stored form of a group, a JSON value in the groups
// bucket under the group's name. Members are not listed here: users and
// devices name their groups, and counts are made by scanning them. That is
// a few milliseconds at the fleet sizes we aim at (10k devices) and keeps a
// single source of truth; an index would be a second one to keep in step.
type groupRecord struct {
	Name       string    `json:"name"`
	MaxDevices int       `json:"max_devices,omitempty"`
	Created    time.Time `json:"created"`
}

func (r *groupRecord) group() Group {
	return Group{Name: r.Name, MaxDevices: r.MaxDevices, Created: r.Created}
}

// memberRecord is the part of a user or device record that names groups.
// Counting members decodes only this, whatever else the records hold.
type memberRecord struct {
	Groups []string `json:"groups"`
}

// AddGroup creates a group from g.Name and g.MaxDevices (ErrExists if taken,
// ErrInvalid for a bad name or a negative quota). Like user names, a name
// differing from an existing one only in letter case is taken: "Ops" and
// "ops" would be different groups that look the same, and a user in one
// would silently not reach the devices of the other.
func (s *Store) AddGroup(g Group) error {
	if err := checkGroupName(g.Name); err != nil {
		return fmt.Errorf("add group %q: %w", truncate(g.Name), fieldErr("name", err))
	}
	if err := checkMaxDevices(g.MaxDevices); err != nil {
		return fmt.Errorf("add group %q: %w", g.Name, fieldErr("maxDevices", err))
	}
	rec := groupRecord{Name: g.Name, MaxDevices: g.MaxDevices, Created: s.now().UTC()}
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("add group %q: %w", g.Name, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGroups)
		if b.Get([]byte(g.Name)) != nil {
			return ErrExists
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if strings.EqualFold(string(k), g.Name) {
				return fmt.Errorf("%w as %q", ErrExists, k)
			}
		}
		return b.Put([]byte(g.Name), data)
	})
	if err != nil {
		return fmt.Errorf("add group %q: %w", g.Name, err)
	}
	return nil
}

// Group returns the named group with its member counts.
func (s *Store) Group(name string) (Group, error) {
	if checkGroupName(name) != nil {
		// No such name can have been stored.
		return Group{}, fmt.Errorf("group %q: %w", truncate(name), ErrNotFound)
	}
	var g Group
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := getGroup(tx, name)
		if err != nil {
			return err
		}
		users, devices, err := countMembers(tx)
		if err != nil {
			return err
		}
		g = rec.group()
		g.Users, g.Devices = users[name], devices[name]
		return nil
	})
	if err != nil {
		return Group{}, fmt.Errorf("group %q: %w", name, err)
	}
	return g, nil
}

// GroupNames lists the groups' names in order: Groups without counting
// members, which reads every user and device.
func (s *Store) GroupNames() ([]string, error) {
	var names []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEach(func(k, _ []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list group names: %w", err)
	}
	return names, nil
}

// Groups returns all groups sorted by name, with member counts.
func (s *Store) Groups() ([]Group, error) {
	var groups []Group
	err := s.db.View(func(tx *bolt.Tx) error {
		users, devices, err := countMembers(tx)
		if err != nil {
			return err
		}
		// Byte order of the keys is name order.
		return tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
			var rec groupRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode group %q: %w", k, err)
			}
			g := rec.group()
			g.Users, g.Devices = users[g.Name], devices[g.Name]
			groups = append(groups, g)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return groups, nil
}

// SetGroupMaxDevices sets the group's device quota (0: none). A quota below
// the current member count is allowed; it stops further devices joining.
func (s *Store) SetGroupMaxDevices(name string, n int) error {
	if checkGroupName(name) != nil {
		return fmt.Errorf("set device quota of group %q: %w", truncate(name), ErrNotFound)
	}
	if err := checkMaxDevices(n); err != nil {
		return fmt.Errorf("set device quota of group %q: %w", name, fieldErr("maxDevices", err))
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getGroup(tx, name)
		if err != nil {
			return err
		}
		rec.MaxDevices = n
		return putGroup(tx, &rec)
	})
	if err != nil {
		return fmt.Errorf("set device quota of group %q: %w", name, err)
	}
	return nil
}

// RemoveGroup deletes a group that no user, device or enrolment key names
// (ErrNotEmpty otherwise, saying how many of each).
func (s *Store) RemoveGroup(name string) error {
	if checkGroupName(name) != nil {
		return fmt.Errorf("remove group %q: %w", truncate(name), ErrNotFound)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGroups)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		// Checked in the same transaction as the delete, so no member can
		// join between the count and the removal.
		users, devices, err := countMembers(tx)
		if err != nil {
			return err
		}
		keys, err := countEnrollKeys(tx, name)
		if err != nil {
			return err
		}
		if users[name] > 0 || devices[name] > 0 || keys > 0 {
			return fmt.Errorf("%w: named by %s, %s and %s", ErrNotEmpty,
				plural(users[name], "user"), plural(devices[name], "device"), plural(keys, "enrolment key"))
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("remove group %q: %w", name, err)
	}
	return nil
}

// checkGroupsExist fails with a *FieldError for field wrapping ErrNotFound,
// naming the first of groups that does not exist. Callers adding users or
// devices to groups run it inside their write transaction.
func checkGroupsExist(tx *bolt.Tx, field string, groups []string) error {
	b := tx.Bucket(bucketGroups)
	for _, g := range groups {
		if b.Get([]byte(g)) == nil {
			return fieldErr(field, fmt.Errorf("group %q: %w", truncate(g), ErrNotFound))
		}
	}
	return nil
}

// checkGroupQuota fails with ErrQuota (in a *FieldError for "groups") if adding one device to each of
// groups would exceed a group's MaxDevices. except is a device id not to
// count (the device being moved), or "".
//
// Groups that do not exist have no quota here; checkGroupsExist reports
// them. The devices are scanned only when one of groups has a quota.
func checkGroupQuota(tx *bolt.Tx, groups []string, except string) error {
	var limited []groupRecord
	for _, name := range groups {
		rec, err := getGroup(tx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("group %q: %w", truncate(name), err)
		}
		if rec.MaxDevices > 0 {
			limited = append(limited, rec)
		}
	}
	if len(limited) == 0 {
		return nil
	}
	counts := make(map[string]int, len(limited))
	err := tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
		if string(k) == except {
			return nil
		}
		var m memberRecord
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode device %q: %w", k, err)
		}
		for _, g := range m.Groups {
			counts[g]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, rec := range limited {
		if counts[rec.Name]+1 > rec.MaxDevices {
			return fieldErr("groups", fmt.Errorf("group %q: %w: it has %d of at most %d devices",
				rec.Name, ErrQuota, counts[rec.Name], rec.MaxDevices))
		}
	}
	return nil
}

// countMembers returns, for every group named by a user or device, how many
// users and how many devices name it. It scans both buckets.
func countMembers(tx *bolt.Tx) (users, devices map[string]int, err error) {
	users, err = countNames(tx.Bucket(bucketUsers), "user")
	if err != nil {
		return nil, nil, err
	}
	devices, err = countNames(tx.Bucket(bucketDevices), "device")
	if err != nil {
		return nil, nil, err
	}
	return users, devices, nil
}

// countNames counts the groups named by the records of b, whose kind is
// used in errors.
func countNames(b *bolt.Bucket, kind string) (map[string]int, error) {
	counts := make(map[string]int)
	err := b.ForEach(func(k, v []byte) error {
		var m memberRecord
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("decode %s %q: %w", kind, k, err)
		}
		for _, g := range m.Groups {
			counts[g]++
		}
		return nil
	})
	return counts, err
}

// getGroup reads and decodes a group record inside tx. It returns
// ErrNotFound itself (unwrapped) when there is no such group.
func getGroup(tx *bolt.Tx, name string) (groupRecord, error) {
	return getRecord[groupRecord](tx, bucketGroups, name, "group")
}

func putGroup(tx *bolt.Tx, rec *groupRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode group record: %w", err)
	}
	return tx.Bucket(bucketGroups).Put([]byte(rec.Name), data)
}

func checkMaxDevices(n int) error {
	if n < 0 {
		return fmt.Errorf("device quota %d %w: want 0 (none) or more", n, ErrInvalid)
	}
	return nil
}

// plural formats a count of things for a message: "1 user", "2 users".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// addedGroups returns the groups in next that are not in prev.
func addedGroups(prev, next []string) []string {
	var out []string
	for _, g := range next {
		if !slices.Contains(prev, g) {
			out = append(out, g)
		}
	}
	return out
}
