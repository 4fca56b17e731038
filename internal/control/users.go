package control

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

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
	password, err := c.stdinPassword(*fromStdin)
	if err != nil {
		return c.fail("add user "+name, err)
	}
	_, generated, err := c.svc.AddUser(c.ctx, c.as, ops.NewUser{Name: name, Password: password, Role: role, Groups: groups})
	if err != nil {
		return c.failGroups(err, groups)
	}
	fmt.Fprintf(c.stdout, "user %s added (%s)\n", name, ops.DescribeRole(role, groups))
	if generated != "" {
		fmt.Fprintf(c.stdout, "password for %s: %s (shown once)\n", name, generated)
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
	password, err := c.stdinPassword(*fromStdin)
	if err != nil {
		return c.fail("set password for "+name, err)
	}
	generated, err := c.svc.SetPassword(c.ctx, c.as, name, password)
	if err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "password for %s changed\n", name)
	if generated != "" {
		fmt.Fprintf(c.stdout, "password for %s: %s (shown once)\n", name, generated)
	}
	return exitOK
}

// stdinPassword reads a password from the first line of stdin when
// fromStdin is set; otherwise it returns "", for the operation to generate
// one (and return it for the command to show).
func (c *call) stdinPassword(fromStdin bool) (string, error) {
	if !fromStdin {
		return "", nil
	}
	line, err := readLine(c.stdin, maxStdin)
	if err != nil {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if line == "" {
		return "", errEmptyPassword
	}
	return line, nil
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

	var u ops.UserUpdate
	if set["group"] || *noGroups {
		g := []string(groups)
		if g == nil {
			g = []string{} // --no-groups: none, which a nil slice would not say
		}
		u.Groups = &g
	}
	if set["role"] {
		r := store.Role(role)
		u.Role = &r
	}
	_, desc, err := c.svc.UpdateUser(c.ctx, c.as, name, u)
	if err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "user %s updated (%s)\n", name, desc)
	return exitOK
}

// userList: user list
func userList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	users, err := c.svc.Users(c.ctx, c.as)
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
	if err := c.svc.RemoveUser(c.ctx, c.as, pos[0]); err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "user %s removed\n", pos[0])
	return exitOK
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
