package ops

import (
	"context"
	"slices"
	"strconv"

	"github.com/reflector-dev/reflector/store"
)

// Groups lists the groups: all to an admin, a user's own to a user.
func (s *Service) Groups(ctx context.Context, c Caller) ([]store.Group, error) {
	groups, err := s.cfg.Store.Groups()
	if err != nil || c.Admin() {
		return groups, err
	}
	return slices.DeleteFunc(groups, func(g store.Group) bool { return !slices.Contains(c.User.Groups, g.Name) }), nil
}

// GroupNames lists the names of the groups Groups would: cheap, for
// filters (Groups counts every group's users and devices).
func (s *Service) GroupNames(ctx context.Context, c Caller) ([]string, error) {
	names, err := s.cfg.Store.GroupNames()
	if err != nil || c.Admin() {
		return names, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(c.User.Groups, n) }), nil
}

// Group returns one group: any to an admin, one of theirs to a user.
func (s *Service) Group(ctx context.Context, c Caller, name string) (store.Group, error) {
	if !c.Admin() && !slices.Contains(c.User.Groups, name) {
		return store.Group{}, notFound("group", name)
	}
	return s.cfg.Store.Group(name)
}

// AddGroup adds a group with a device quota (0: none) (admins).
func (s *Service) AddGroup(ctx context.Context, c Caller, name string, maxDevices int) (store.Group, error) {
	if err := c.requireAdmin("add group " + name); err != nil {
		return store.Group{}, err
	}
	if err := s.cfg.Store.AddGroup(store.Group{Name: name, MaxDevices: maxDevices}); err != nil {
		return store.Group{}, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditGroupAdd, Group: name, Reason: DescribeQuota(maxDevices)})
	return s.cfg.Store.Group(name)
}

// SetGroupMaxDevices changes a group's device quota (admins). A quota below
// the group's device count is allowed: nothing is taken away, but no device
// may join until fewer remain.
func (s *Service) SetGroupMaxDevices(ctx context.Context, c Caller, name string, maxDevices int) (store.Group, error) {
	if err := c.requireAdmin("change group " + name); err != nil {
		return store.Group{}, err
	}
	if err := s.cfg.Store.SetGroupMaxDevices(name, maxDevices); err != nil {
		return store.Group{}, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditGroupSet, Group: name, Reason: DescribeQuota(maxDevices)})
	return s.cfg.Store.Group(name)
}

// RemoveGroup removes a group no user, device or enrolment key is in
// (admins; store.ErrNotEmpty otherwise).
func (s *Service) RemoveGroup(ctx context.Context, c Caller, name string) error {
	if err := c.requireAdmin("remove group " + name); err != nil {
		return err
	}
	if err := s.cfg.Store.RemoveGroup(name); err != nil {
		return err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditGroupRm, Group: name})
	return nil
}

// DescribeQuota is "at most N devices" or "no device limit", for messages
// and the audit log.
func DescribeQuota(n int) string {
	switch n {
	case 0:
		return "no device limit"
	case 1:
		return "at most 1 device"
	}
	return "at most " + strconv.Itoa(n) + " devices"
}
