package control

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
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

	password, generated := "", false
	if *fromStdin {
		line, err := readLine(c.stdin, maxStdin)
		if err != nil {
			return c.fail("add user "+name, fmt.Errorf("read password from stdin: %w", err))
		}
		if line == "" {
			return c.fail("add user "+name, errEmptyPassword)
		}
		password = line
	} else {
		var err error
		if password, err = generatePassword(); err != nil {
			return c.fail("add user "+name, err)
		}
		generated = true
	}

	if err := c.env.Store.AddUser(name, password, role, groups); err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "user %s added (%s", name, role)
	if len(groups) > 0 {
		fmt.Fprintf(c.stdout, ", groups %s", strings.Join(groups, ","))
	}
	fmt.Fprintln(c.stdout, ")")
	if generated {
		fmt.Fprintf(c.stdout, "password for %s: %s (shown once)\n", name, password)
	}
	return exitOK
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
	fmt.Fprintln(tw, "NAME\tROLE\tGROUPS\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, orDash(strings.Join(u.Groups, ",")),
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

// wantsPasswordStdin reports whether args (after "user add") ask for the
// password on stdin: -password-stdin or --password-stdin, optionally
// =true/=false, before any "--".
func wantsPasswordStdin(args []string) bool {
	want := false
	for _, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "password-stdin" {
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
