package control

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
)

// tokenCreate: token create --user NAME --name LABEL [--expires 720h|90d|never] [--devices PATTERN]
func tokenCreate(c *call, args []string) int {
	fs := c.flags()
	user := fs.String("user", "", "the user the token acts as (required)")
	name := fs.String("name", "", "what the token is for, e.g. laptop; unique per user (required)")
	var lifetime lifetimeFlag // never, unless given
	fs.Var(&lifetime, "expires", "lifetime, e.g. 720h or 90d; 0 or never for none")
	var devices patternFlag
	fs.Var(&devices, "devices", "only devices whose id matches this pattern, e.g. 'pump-*' (default: every device the user may reach)")
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	switch {
	case *user == "":
		return c.usageError(fs, "missing --user")
	case *name == "":
		return c.usageError(fs, "missing --name")
	}

	token, rec, err := c.svc.CreateToken(c.ctx, c.as, ops.NewToken{
		User:    *user,
		Name:    *name,
		Devices: string(devices),
		Expires: lifetime.expires(time.Now()),
	})
	if err != nil {
		return c.fail("", err)
	}
	desc := ops.DescribeToken(rec)

	device := "DEVICE"
	if rec.Devices != "" && !strings.ContainsAny(rec.Devices, `*?[\`) {
		device = rec.Devices // a pattern that names one device
	}
	proxy := c.svc.ReflectorURL()
	w := c.stdout
	fmt.Fprintf(w, "token %s for %s created (id %s, %s)\n", rec.Name, rec.User, rec.ID, desc)
	fmt.Fprintf(w, "token (shown once): %s\n", token)
	fmt.Fprintf(w, "use it as %s's proxy password, e.g.:\n", rec.User)
	fmt.Fprintf(w, "  curl --proxy %s --proxy-user %s http://%s/\n",
		ops.ShellQuote(proxy), ops.ShellQuoteAlways(rec.User+":"+token), device)
	return exitOK
}

// tokenList: token list [--user NAME]
func tokenList(c *call, args []string) int {
	fs := c.flags()
	user := fs.String("user", "", "only the tokens of this user")
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	tokens, err := c.svc.Tokens(c.ctx, c.as, *user)
	if err != nil {
		return c.fail("", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tNAME\tDEVICES\tCREATED\tEXPIRES\tLAST USED")
	for _, t := range tokens {
		devices := t.Devices
		if devices == "" {
			devices = "all"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.User, cell(t.Name), cell(devices),
			ops.DateTime(t.Created), expiry(t.Expires, now), ops.DateTime(t.LastUsed))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list tokens", err)
	}
	return exitOK
}

// tokenRevoke: token revoke ID
func tokenRevoke(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	// Streams opened with the token are closed by the server's re-check.
	rec, err := c.svc.RevokeToken(c.ctx, c.as, pos[0])
	if err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "token %s (%s of %s) revoked\n", rec.ID, rec.Name, rec.User)
	return exitOK
}
