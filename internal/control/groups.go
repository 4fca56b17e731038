package control

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/reflector-dev/reflector/internal/ops"
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
	if _, err := c.svc.AddGroup(c.ctx, c.as, name, *maxDevices); err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "group %s added (%s)\n", name, ops.DescribeQuota(*maxDevices))
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
	g, err := c.svc.SetGroupMaxDevices(c.ctx, c.as, name, *maxDevices)
	if err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "group %s updated (%s)\n", name, ops.DescribeQuota(*maxDevices))
	if g.MaxDevices > 0 && g.Devices > g.MaxDevices {
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

// groupList: group list
func groupList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	groups, err := c.svc.Groups(c.ctx, c.as)
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
	if err := c.svc.RemoveGroup(c.ctx, c.as, pos[0]); err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "group %s removed\n", pos[0])
	return exitOK
}
