package control

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/reflector-dev/reflector/store"
)

// generatedPasswordBytes is the entropy of a generated password: 128 bits,
// printed as 22 characters of base64url.
const generatedPasswordBytes = 16

// errEmptyPassword is returned for --password-stdin with nothing on the
// first line: an empty password would be refused by the store anyway, but
// this says where it came from.
var errEmptyPassword = errors.New("empty password on stdin")

// userAdd: user add NAME [--admin] [--group G]... [--password-stdin]
func userAdd(c *call, args []string) int {
	fs := c.flags()
	admin := fs.Bool("admin", false, "make the user an administrator (default: a user who reaches the devices of their groups)")
	var groups listFlag
	fs.Var(&groups, "group", "a group of the user; repeat or separate with commas")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	name := pos[0]
	role := store.RoleUser
	if *admin {
		role = store.RoleAdmin
	}
	password, generated, err := c.newPassword(*fromStdin)
	if err != nil {
		return c.fail("add user "+name, err)
	}
	if err := c.env.Store.AddUser(name, password, role, groups); err != nil {
		return c.failGroups(err, groups)
	}
	desc := string(role)
	if len(groups) > 0 {
		desc += ", groups " + strings.Join(groups, ",")
	}
	c.audit(store.AuditEvent{Kind: store.AuditUserAdd, User: name, Reason: "role " + desc})
	fmt.Fprintf(c.stdout, "user %s added (%s)\n", name, desc)
	if generated {
		fmt.Fprintf(c.stdout, "password for %s: %s (shown once)\n", name, password)
	}
	return exitOK
}

// userPasswd: user passwd NAME [--password-stdin]
func userPasswd(c *call, args []string) int {
	fs := c.flags()
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	name := pos[0]
	password, generated, err := c.newPassword(*fromStdin)
	if err != nil {
		return c.fail("set password for "+name, err)
	}
	if err := c.env.Store.SetPassword(name, password); err != nil {
		return c.fail("", err)
	}
	c.audit(store.AuditEvent{Kind: store.AuditUserSet, User: name, Reason: "password changed"})
	// The old password may be what open streams authenticated with.
	c.accessChanged()
	fmt.Fprintf(c.stdout, "password for %s changed\n", name)
	if generated {
		fmt.Fprintf(c.stdout, "password for %s: %s (shown once)\n", name, password)
	}
	return exitOK
}

// newPassword reads a password from the first line of stdin, or generates
// one (generated is then true and the caller shows it).
func (c *call) newPassword(fromStdin bool) (password string, generated bool, err error) {
	if !fromStdin {
		password, err = generatePassword()
		return password, err == nil, err
	}
	line, err := readLine(c.stdin, maxStdin)
	if err != nil {
		return "", false, fmt.Errorf("read password from stdin: %w", err)
	}
	if line == "" {
		return "", false, errEmptyPassword
	}
	return line, false, nil
}

// userSet: user set NAME [--role admin|user] [--group G]... [--no-groups]
func userSet(c *call, args []string) int {
	fs := c.flags()
	var role roleFlag
	fs.Var(&role, "role", "admin (reaches every device, may administer) or user (reaches the devices of their groups)")
	var groups listFlag
	fs.Var(&groups, "group", "a group of the user, replacing the current ones; repeat or separate with commas")
	noGroups := fs.Bool("no-groups", false, "remove the user from all groups")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	name, set := pos[0], given(fs)
	switch {
	case set["group"] && *noGroups:
		return c.usageError(fs, "--group and --no-groups exclude each other")
	case set["group"] && len(groups) == 0:
		return c.usageError(fs, "--group needs a group name; --no-groups removes all")
	case !set["role"] && !set["group"] && !*noGroups:
		return c.usageError(fs, "nothing to change: give --role, --group or --no-groups")
	}

	// Groups first: they can fail (a group that does not exist) where the
	// role cannot, so a failure leaves the user as it was.
	var changes []string
	if set["group"] || *noGroups {
		slices.Sort(groups) // as the store keeps them, for the message
		groups = slices.Compact(groups)
		if err := c.env.Store.SetUserGroups(name, groups); err != nil {
			return c.fail("", err)
		}
		changes = append(changes, describeGroups(groups))
	}
	if set["role"] {
		if err := c.env.Store.SetUserRole(name, store.Role(role)); err != nil {
			return c.fail("", err)
		}
		changes = append(changes, "role "+string(role))
	}
	desc := strings.Join(changes, ", ")
	c.audit(store.AuditEvent{Kind: store.AuditUserSet, User: name, Reason: desc})
	c.accessChanged()
	fmt.Fprintf(c.stdout, "user %s updated (%s)\n", name, desc)
	return exitOK
}

// describeGroups is "groups a,b" or "no groups", for messages and the
// audit log.
func describeGroups(groups []string) string {
	if len(groups) == 0 {
		return "no groups"
	}
	return "groups " + strings.Join(groups, ",")
}

// userList: user list
func userList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	users, err := c.env.Store.Users()
	if err != nil {
		return c.fail("", err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tGROUPS\tTOTP\tCREATED")
	for _, u := range users {
		totp := "-"
		if u.TOTP {
			totp = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, orDash(strings.Join(u.Groups, ",")), totp,
			u.Created.Local().Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list users", err)
	}
	return exitOK
}

// userRemove: user rm NAME
func userRemove(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	if err := c.env.Store.RemoveUser(pos[0]); err != nil {
		return c.fail("", err)
	}
	c.audit(store.AuditEvent{Kind: store.AuditUserRm, User: pos[0]})
	c.accessChanged()
	fmt.Fprintf(c.stdout, "user %s removed\n", pos[0])
	return exitOK
}

// generatePassword returns 128 random bits as base64url without padding.
func generatePassword() (string, error) {
	b := make([]byte, generatedPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// readLine returns the first line of r without its line ending ("\n" or
// "\r\n"), reading at most limit+1 bytes of r (it may read past the
// newline; nothing else reads this stdin). A last line without a newline
// counts; an empty r gives "". It returns as soon as a line is in, so a
// password typed on a terminal needs Enter, not Ctrl-D.
func readLine(r io.Reader, limit int64) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, limit+1))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if int64(len(line)) > limit {
		return "", fmt.Errorf("line longer than %d bytes", limit)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	return line, nil
}

// wantsPasswordStdin reports whether args (after "user add" or "user
// passwd") ask for the password on stdin (--password-stdin).
func wantsPasswordStdin(args []string) bool { return boolFlagSet(args, "password-stdin") }

// boolFlagSet reports whether args turn the boolean flag name on: -name or
// --name, optionally =true/=false (the last one counts), before any "--".
// Main asks it before parsing, to know whether to send stdin along.
func boolFlagSet(args []string, name string) bool {
	want := false
	for _, a := range args {
		if a == "--" {
			break
		}
		flag, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !strings.HasPrefix(a, "-") || flag != name {
			continue
		}
		if !hasValue {
			want = true
			continue
		}
		if b, err := strconv.ParseBool(value); err == nil {
			want = b
		}
	}
	return want
}
