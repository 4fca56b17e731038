package control

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// enrollCreate: enroll create --group G [--max N] [--expires 24h|never]
func enrollCreate(c *call, args []string) int {
	fs := c.flags()
	group := fs.String("group", "", "the group enrolled devices join (required)")
	maxUses := fs.Int("max", 0, "how many devices may enrol with the key; 0 for no limit")
	lifetime := lifetimeFlag{d: ops.DefaultEnrollLifetime}
	fs.Var(&lifetime, "expires", "lifetime, e.g. 24h or 7d; 0 or never for none")
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	switch {
	case *group == "":
		return c.usageError(fs, "missing --group")
	case *maxUses < 0:
		return c.usageError(fs, "--max %d: want 0 (no limit) or more", *maxUses)
	}
	key, rec, err := c.svc.CreateEnrollKey(c.ctx, c.as, store.EnrollKey{
		Group:   *group,
		Max:     *maxUses,
		Expires: lifetime.expires(time.Now()),
	})
	if err != nil {
		return c.fail("", err)
	}
	desc := ops.DescribeEnrollKey(rec)

	w := c.stdout
	fmt.Fprintf(w, "enrolment key for group %s created (id %s, %s)\n", rec.Group, rec.ID, desc)
	fmt.Fprintf(w, "key (shown once): %s\n", key)
	fmt.Fprintf(w, "on each new device, run the agent with (%s: the device's new id, lower-case letters, digits and '-'):\n",
		ops.EnrollDevicePlaceholder)
	fmt.Fprintf(w, "  %s\n", c.svc.EnrollAgentLine(key))
	fmt.Fprintln(w, "The agent registers itself on its first start and keeps the secret it receives in its --state file;")
	fmt.Fprintln(w, "from then on it no longer needs the key.")
	return exitOK
}

// enrollList: enroll list
func enrollList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	keys, err := c.svc.EnrollKeys(c.ctx, c.as)
	if err != nil {
		return c.fail("", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tUSES\tCREATED\tEXPIRES")
	for _, k := range keys {
		uses := strconv.Itoa(k.Uses)
		if k.Max > 0 {
			uses += "/" + strconv.Itoa(k.Max)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Group, uses, ops.DateTime(k.Created), expiry(k.Expires, now))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list enrolment keys", err)
	}
	return exitOK
}

// enrollRemove: enroll rm ID
func enrollRemove(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	if err := c.svc.RemoveEnrollKey(c.ctx, c.as, id); err != nil {
		return c.fail("", err)
	}
	// Devices that enrolled with the key keep their own secrets.
	fmt.Fprintf(c.stdout, "enrolment key %s removed\n", id)
	return exitOK
}
