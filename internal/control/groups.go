package control

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/reflector-dev/reflector/store"
)

// groupAdd: group add NAME [--max-devices N]
func groupAdd(c *call, args []string) int {
	fs := c.flags()
	maxDevices := fs.Int("max-devices", 0, "at most this many devices may be in the group; 0 for no limit")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	if *maxDevices < 0 {
		return c.usageError(fs, "--max-devices %d: want 0 (no limit) or more", *maxDevices)
	}
	name := pos[0]
	if err := c.env.Store.AddGroup(store.Group{Name: name, MaxDevices: *maxDevices}); err != nil {
		return c.fail("", err)
	}
	desc := quotaDesc(*maxDevices)
	c.audit(store.AuditEvent{Kind: store.AuditGroupAdd, Group: name, Reason: desc})
	fmt.Fprintf(c.stdout, "group %s added (%s)\n", name, desc)
	return exitOK
}

// groupSet: group set NAME --max-devices N
func groupSet(c *call, args []string) int {
	fs := c.flags()
	maxDevices := fs.Int("max-devices", 0, "at most this many devices may be in the group; 0 for no limit")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	switch {
	case !given(fs)["max-devices"]:
		return c.usageError(fs, "nothing to change: give --max-devices")
	case *maxDevices < 0:
		return c.usageError(fs, "--max-devices %d: want 0 (no limit) or more", *maxDevices)
	}
	name := pos[0]
	if err := c.env.Store.SetGroupMaxDevices(name, *maxDevices); err != nil {
		return c.fail("", err)
	}
	desc := quotaDesc(*maxDevices)
	c.audit(store.AuditEvent{Kind: store.AuditGroupSet, Group: name, Reason: desc})
	fmt.Fprintf(c.stdout, "group %s updated (%s)\n", name, desc)
	if g, err := c.env.Store.Group(name); err == nil && g.MaxDevices > 0 && g.Devices > g.MaxDevices {
		// Allowed (nothing is taken away), but worth knowing.
		fmt.Fprintf(c.stderr, "reflector: note: group %s already has %d devices; no more may join until fewer than %d remain\n",
			name, g.Devices, g.MaxDevices)
	}
	return exitOK
}

// failGroups is fail for user add and device add, whose only missing
// record can be a group: it says how to make one.
func (c *call) failGroups(err error, groups []string) int {
	code := c.fail("", err)
	if errors.Is(err, store.ErrNotFound) && len(groups) > 0 {
		fmt.Fprintln(c.stderr, "reflector: groups must exist first: reflector group add NAME")
	}
	return code
}

// quotaDesc is "at most N devices" or "no device limit".
func quotaDesc(n int) string {
	if n == 0 {
		return "no device limit"
	}
	if n == 1 {
		return "at most 1 device"
	}
	return "at most " + strconv.Itoa(n) + " devices"
}

// groupList: group list
func groupList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	groups, err := c.env.Store.Groups()
	if err != nil {
		return c.fail("", err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAX DEVICES\tUSERS\tDEVICES")
	for _, g := range groups {
		quota := "-"
		if g.MaxDevices > 0 {
			quota = strconv.Itoa(g.MaxDevices)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", g.Name, quota, g.Users, g.Devices)
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list groups", err)
	}
	return exitOK
}

// groupRemove: group rm NAME
func groupRemove(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	// Only an empty group can go (the store refuses others), so nobody
	// loses access by it.
	if err := c.env.Store.RemoveGroup(pos[0]); err != nil {
		return c.fail("", err)
	}
	c.audit(store.AuditEvent{Kind: store.AuditGroupRm, Group: pos[0]})
	fmt.Fprintf(c.stdout, "group %s removed\n", pos[0])
	return exitOK
}
