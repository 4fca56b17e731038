package control

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Exit codes of Run and Main.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Env is what commands run against.
type Env struct {
	Store        *store.Store
	Hub          *tunnel.Hub // nil when no server runs: every device is offline
	ReflectorURL string      // e.g. https://localhost:8443, for the agent command line
	Fingerprint  string      // "sha256:<hex>" of the reflector's certificate, "" if unknown
	// AccessChanged, when set, is called after every change that may take
	// access away (users, groups, tokens, device groups, ports, disable,
	// removal), so the server re-checks open streams. Nil when no server runs.
	AccessChanged func()
}

// command is one admin command. Its run function gets the arguments after
// the command's words ("alice", "--admin" for "user add alice --admin").
type command struct {
	words   string // "user add"
	args    string // the synopsis after the words
	summary string
	run     func(c *call, args []string) int
	// stdin reports whether the command, given its arguments, reads stdin.
	// Main reads stdin before sending a command over the socket only then,
	// so a command that needs none never waits on a terminal.
	stdin func(args []string) bool
}

// commands is the table Run dispatches on, in the order usage lists them.
var commands = []command{
	{words: "user add", args: "NAME [--admin] [--group G]... [--password-stdin]",
		summary: "add a user; prints a generated password unless --password-stdin",
		run:     userAdd, stdin: wantsPasswordStdin},
	{words: "user list", summary: "list users", run: userList},
	{words: "user rm", args: "NAME", summary: "remove a user", run: userRemove},
	{words: "device add", args: "ID [--group G]... [--ports 80,22] [--name TEXT] [--http-port N]",
		summary: "add a device; prints its secret and the agent command line",
		run:     deviceAdd},
	{words: "device list", summary: "list devices and their status", run: deviceList},
	{words: "device rm", args: "ID", summary: "remove a device and close its tunnel", run: deviceRemove},
}

// lookup finds the command named by the first words of args and returns it
// with the remaining arguments.
func lookup(args []string) (*command, []string, bool) {
	if len(args) < 2 {
		return nil, nil, false
	}
	words := args[0] + " " + args[1]
	for i := range commands {
		if commands[i].words == words {
			return &commands[i], args[2:], true
		}
	}
	return nil, nil, false
}

// call is one execution of a command: its environment and streams.
type call struct {
	cmd    *command
	ctx    context.Context // ends with the server or the connection; for commands that wait
	env    Env
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Run executes one admin command (args without the program name, e.g.
// ["user","add","alice","--admin"]) and returns the exit code: 0 ok,
// 1 failure, 2 usage. Output goes to stdout, messages and errors to stderr.
func Run(ctx context.Context, env Env, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, rest, ok := lookup(args)
	if !ok {
		switch {
		case len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		case len(args) == 1 && (args[0] == "user" || args[0] == "device"):
			fmt.Fprintf(stderr, "reflector: %s: missing subcommand\n", args[0])
		default:
			fmt.Fprintf(stderr, "reflector: unknown command %q\n", strings.Join(args[:min(len(args), 2)], " "))
		}
		usage(stderr)
		return exitUsage
	}
	if env.Store == nil {
		// A wiring mistake, not a user's: say so rather than panic.
		fmt.Fprintf(stderr, "reflector: %s: no store to run against\n", cmd.words)
		return exitFailure
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	c := &call{cmd: cmd, ctx: ctx, env: env, stdin: stdin, stdout: stdout, stderr: stderr}
	return cmd.run(c, rest)
}

// usage writes the list of commands.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: reflector <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "admin commands (run inside the reflector when one runs on the data directory):")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(cmd.words+" "+cmd.args))
		fmt.Fprintf(w, "        %s\n", cmd.summary)
	}
	fmt.Fprintln(w, "Flags may come before or after the positional argument; -x and --x are the same.")
}

// fail reports a failed step as "reflector: <what>: <err>" and returns 1.
// Store errors already name their step and record; pass what == "" for them
// so the step is not said twice.
func (c *call) fail(what string, err error) int {
	if what == "" {
		fmt.Fprintf(c.stderr, "reflector: %v\n", err)
	} else {
		fmt.Fprintf(c.stderr, "reflector: %s: %v\n", what, err)
	}
	return exitFailure
}

// flags returns a flag set for the command whose errors and usage go to
// stderr.
func (c *call) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.cmd.words, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: reflector %s\n", strings.TrimSpace(c.cmd.words+" "+c.cmd.args))
		fs.PrintDefaults()
	}
	return fs
}

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

func (p *portsFlag) String() string { return formatPorts(*p) }

func (p *portsFlag) Set(s string) error {
	ports, err := tunnel.ParsePorts(s)
	if err != nil {
		return err
	}
	*p = append(*p, ports...)
	return nil
}

// portFlag is one port, 1-65535; 0 means unset.
type portFlag uint16

func (p *portFlag) String() string {
	if *p == 0 {
		return ""
	}
	return strconv.Itoa(int(*p))
}

func (p *portFlag) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("bad port %q: want 1-65535", s)
	}
	*p = portFlag(n)
	return nil
}

// formatPorts joins ports with commas.
func formatPorts(ports []uint16) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}

// orDash returns s, or "-" for an empty table cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
