package control

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// defaultEnrollLifetime is how long an enrolment key works unless --expires
// says otherwise. Unlike a token, a key is typed into many devices' set-up
// and is easily left lying around; a day is enough to roll out a batch.
const defaultEnrollLifetime = 24 * time.Hour

// enrollDevicePlaceholder stands for the device id in the printed agent
// line; a shell word, unlike "<ID>", which the shell would take for a
// redirection.
const enrollDevicePlaceholder = "DEVICE-ID"

// enrollCreate: enroll create --group G [--max N] [--expires 24h|never]
func enrollCreate(c *call, args []string) int {
	fs := c.flags()
	group := fs.String("group", "", "the group enrolled devices join (required)")
	maxUses := fs.Int("max", 0, "how many devices may enrol with the key; 0 for no limit")
	lifetime := lifetimeFlag{d: defaultEnrollLifetime}
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
	key, rec, err := c.env.Store.CreateEnrollKey(store.EnrollKey{
		Group:   *group,
		Max:     *maxUses,
		Expires: lifetime.expires(time.Now()),
	})
	if err != nil {
		return c.fail("", err)
	}
	desc := enrollDesc(rec)
	c.audit(store.AuditEvent{Kind: store.AuditEnrollKey, Group: rec.Group, Reason: "key " + rec.ID + ", " + desc})

	w := c.stdout
	fmt.Fprintf(w, "enrolment key for group %s created (id %s, %s)\n", rec.Group, rec.ID, desc)
	fmt.Fprintf(w, "key (shown once): %s\n", key)
	fmt.Fprintf(w, "on each new device, run the agent with (%s: the device's new id, lower-case letters, digits and '-'):\n",
		enrollDevicePlaceholder)
	// In the environment, not as --enroll: a command line is visible to
	// every user of the device (as for the device secret in device add).
	fmt.Fprintf(w, "  REFLECTOR_ENROLL_KEY=%s %s\n", shellQuoteAlways(key),
		c.agentCommand("--device", enrollDevicePlaceholder, agentPorts(nil, 0)))
	fmt.Fprintln(w, "The agent registers itself on its first start and keeps the secret it receives in its --state file;")
	fmt.Fprintln(w, "from then on it no longer needs the key.")
	return exitOK
}

// enrollDesc describes a key's limits: "up to 10 devices, expires ...".
func enrollDesc(k store.EnrollKey) string {
	desc := "any number of devices"
	switch k.Max {
	case 0:
	case 1:
		desc = "1 device"
	default:
		desc = "up to " + strconv.Itoa(k.Max) + " devices"
	}
	if k.Expires.IsZero() {
		return desc + ", no expiry"
	}
	return desc + ", expires " + dateTime(k.Expires)
}

// enrollList: enroll list
func enrollList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	keys, err := c.env.Store.EnrollKeys()
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Group, uses, dateTime(k.Created), expiry(k.Expires, now))
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
	// RevokeEnrollKey does not return the record; look up its group for
	// the audit log first.
	group := ""
	if keys, err := c.env.Store.EnrollKeys(); err == nil {
		for _, k := range keys {
			if k.ID == id {
				group = k.Group
			}
		}
	}
	if err := c.env.Store.RevokeEnrollKey(id); err != nil {
		return c.fail("", err)
	}
	c.audit(store.AuditEvent{Kind: store.AuditEnrollRm, Group: group, Reason: "key " + id})
	// Devices that enrolled with the key keep their own secrets.
	fmt.Fprintf(c.stdout, "enrolment key %s removed\n", id)
	return exitOK
}
