package store

import (
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

// AddGroup creates a group from g.Name and g.MaxDevices (ErrExists if taken,
// ErrInvalid for a bad name or a negative quota).
func (s *Store) AddGroup(g Group) error { return errTODO }

// Group returns the named group with its member counts.
func (s *Store) Group(name string) (Group, error) { return Group{}, errTODO }

// Groups returns all groups sorted by name, with member counts.
func (s *Store) Groups() ([]Group, error) { return nil, errTODO }

// SetGroupMaxDevices sets the group's device quota (0: none). A quota below
// the current member count is allowed; it stops further devices joining.
func (s *Store) SetGroupMaxDevices(name string, n int) error { return errTODO }

// RemoveGroup deletes a group that no user, device or enrolment key names
// (ErrNotEmpty otherwise, saying how many of each).
func (s *Store) RemoveGroup(name string) error { return errTODO }

// checkGroupsExist fails with ErrNotFound naming the first of groups that
// does not exist. Callers adding users or devices to groups run it inside
// their write transaction.
func checkGroupsExist(tx *bolt.Tx, groups []string) error { return nil }

// checkGroupQuota fails with ErrQuota if adding one device to each of
// groups would exceed a group's MaxDevices. except is a device id not to
// count (the device being moved), or "".
func checkGroupQuota(tx *bolt.Tx, groups []string, except string) error { return nil }
