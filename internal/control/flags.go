package control

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// parse parses args with fs and returns exactly want positional arguments.
// Flags may come before, between or after the positional arguments, as in
// "user add alice --admin"; everything after "--" is positional. On error it
// has already printed the reason and usage, and returns the exit code: 0 for
// -h, 2 otherwise.
func (c *call) parse(fs *flag.FlagSet, args []string, want int) ([]string, int, bool) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, exitOK, false
	}
	if err != nil {
		return nil, exitUsage, false // the flag package printed it
	}
	if len(pos) != want {
		if len(pos) < want {
			fmt.Fprintf(c.stderr, "reflector: %s: missing argument\n", fs.Name())
		} else {
			fmt.Fprintf(c.stderr, "reflector: %s: unexpected argument %q\n", fs.Name(), pos[want])
		}
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// usageError reports arguments that parse but do not make sense together
// ("--group and --no-groups", "nothing to change") as a usage error: the
// reason, the command's usage, and exit code 2.
func (c *call) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "reflector: %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// parseInterspersed is fs.Parse that carries on past positional arguments:
// the flag package stops at the first one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			// Parse stopped at the terminator (or a flag took "--" as its
			// value, after which treating the rest as positional is what the
			// user most likely meant too).
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// given returns the names of the flags set on the command line, so that a
// command can tell an empty --name (clear the name) from no --name at all.
func given(fs *flag.FlagSet) map[string]bool {
	m := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// listFlag is a repeatable flag whose values may also be comma-separated:
// --group a --group b and --group a,b mean the same.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// portsFlag is a repeatable, comma-separated list of ports.
type portsFlag []uint16

func (p *portsFlag) String() string { return tunnel.FormatPorts(*p) }

func (p *portsFlag) Set(s string) error {
	ports, err := tunnel.ParsePorts(s)
	if err != nil {
		return err
	}
	*p = append(*p, ports...)
	return nil
}

// portFlag is one port, 1-65535; 0 means unset. With zeroOK (device set
// --http-port 0) an explicit 0 is accepted too, meaning "the agent's".
type portFlag struct {
	port   uint16
	zeroOK bool
}

func (p *portFlag) String() string {
	if p == nil || p.port == 0 {
		return ""
	}
	return strconv.Itoa(int(p.port))
}

func (p *portFlag) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || (n == 0 && !p.zeroOK) {
		if p.zeroOK {
			return fmt.Errorf("bad port %q: want 0-65535", s)
		}
		return fmt.Errorf("bad port %q: want 1-65535", s)
	}
	p.port = uint16(n)
	return nil
}

// roleFlag is --role admin|user.
type roleFlag store.Role

func (r *roleFlag) String() string { return string(*r) }

func (r *roleFlag) Set(s string) error {
	switch role := store.Role(strings.TrimSpace(s)); role {
	case store.RoleAdmin, store.RoleUser:
		*r = roleFlag(role)
		return nil
	}
	return fmt.Errorf("unknown role %q: want %s or %s", s, store.RoleAdmin, store.RoleUser)
}

// patternFlag is a path.Match pattern of device ids, checked when given so
// that a typo is a usage error rather than a token that matches nothing.
type patternFlag string

func (p *patternFlag) String() string { return string(*p) }

func (p *patternFlag) Set(s string) error {
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("bad pattern %q: %v (want e.g. pump-* or plant-?-*)", s, err)
	}
	*p = patternFlag(s)
	return nil
}

// lifetimeFlag is an expiry given as a lifetime: a Go duration, days ("90d",
// "1d12h"), or "0"/"never" for none.
type lifetimeFlag struct {
	d time.Duration // 0: never
}

func (l *lifetimeFlag) String() string {
	if l == nil || l.d == 0 {
		return "never"
	}
	return formatLifetime(l.d)
}

func (l *lifetimeFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "never" || s == "0" {
		l.d = 0
		return nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("bad lifetime %q: want a positive duration such as 24h or 90d, or never", s)
	}
	l.d = d
	return nil
}

// expires returns when something made at now expires: zero for never.
func (l lifetimeFlag) expires(now time.Time) time.Time {
	if l.d == 0 {
		return time.Time{}
	}
	return now.Add(l.d)
}

// sinceFlag is the start of a time range: a duration back from now
// ("1h", "7d") or an RFC 3339 time.
type sinceFlag struct {
	ago time.Duration
	at  time.Time
}

func (f *sinceFlag) String() string {
	if f == nil {
		return ""
	}
	if !f.at.IsZero() {
		return f.at.Format(time.RFC3339)
	}
	if f.ago != 0 {
		return formatLifetime(f.ago)
	}
	return ""
}

func (f *sinceFlag) Set(s string) error {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		f.at, f.ago = t, 0
		return nil
	}
	d, err := ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("bad time %q: want a duration back from now (30m, 1h, 7d) or an RFC 3339 time (2025-03-04T05:06:07Z)", s)
	}
	f.at, f.ago = time.Time{}, d
	return nil
}

// time returns the start of the range, zero if none was given.
func (f sinceFlag) time(now time.Time) time.Time {
	switch {
	case !f.at.IsZero():
		return f.at
	case f.ago > 0:
		return now.Add(-f.ago)
	}
	return time.Time{}
}

// maxDays keeps days*24h inside a time.Duration (about 292 years).
const maxDays = math.MaxInt64 / int64(24*time.Hour)

// ParseDuration is time.ParseDuration that also takes a leading number of days
// (admin commands and serve flags share it):
// "90d", "1d12h". Plain Go durations ("720h", "1h30m") pass through.
func ParseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 720h or 90d", s)
		}
		return d, nil
	}
	n, err := strconv.ParseInt(days, 10, 64)
	if err != nil || n < 0 || n > maxDays {
		return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 720h or 90d", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || d > math.MaxInt64-r {
			return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 720h or 90d", s)
		}
		d += r
	}
	return d, nil
}

// formatLifetime writes a duration as it would be typed: "90d", "24h",
// "1h30m0s".
func formatLifetime(d time.Duration) string {
	switch day := 24 * time.Hour; {
	case d >= 2*day && d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}
