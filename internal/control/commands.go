package control

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
)

// Exit codes of Run and Main.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Env is what commands run against.
type Env struct {
	// Ops runs every operation a command makes, as ops.Local(): the
	// server's service, shared with the REST API so both check, change and
	// audit alike, or one on the store Main opened when no server runs
	// (no hub then, so every device is offline). Listings read its Store.
	Ops *ops.Service
}

// command is one admin command. Its run function gets the arguments after
// the command's words ("alice", "--admin" for "user add alice --admin").
type command struct {
	words   string // "user add", "user totp enable", "audit"
	args    string // the synopsis after the words
	summary string
	run     func(c *call, args []string) int
	// stdin reports whether the command, given its arguments, reads stdin.
	// Main reads stdin before sending a command over the socket only then,
	// so a command that needs none never waits on a terminal.
	stdin func(args []string) bool
	// dialogue, when set, is how Main runs the command: as a sequence of
	// requests with prompts between them (the socket carries one request
	// and one answer, with stdin sent up front). Run still runs the whole
	// command in one call when given it directly.
	dialogue func(s *session, cmd *command, args []string, stdin io.Reader) int
	// timeout is how long the command may run on the server; zero means
	// connTimeout. Both ends of the control socket take it from here.
	timeout time.Duration
}

// runTimeout is how long the command args names may run on the server.
func runTimeout(args []string) time.Duration {
	if cmd, _, ok := lookup(args); ok && cmd.timeout > 0 {
		return cmd.timeout
	}
	return connTimeout
}

// commands is the table Run dispatches on, in the order usage lists them.
// It is filled in by init: dialogues run commands through Run, which reads
// the table, and a table initialised in its declaration would refer to
// itself.
var commands []command

func init() {
	commands = []command{
		{words: "user add", args: "NAME [--admin] [--group G]... [--password-stdin]",
			summary: "add a user; prints a generated password unless --password-stdin",
			run:     userAdd, stdin: wantsPasswordStdin},
		{words: "user list", summary: "list users", run: userList},
		{words: "user set", args: "NAME [--role admin|user] [--group G]... [--no-groups]",
			summary: "change a user's role or groups (--group replaces the user's groups)", run: userSet},
		{words: "user passwd", args: "NAME [--password-stdin]",
			summary: "set a new password; prints a generated one unless --password-stdin",
			run:     userPasswd, stdin: wantsPasswordStdin},
		{words: "user totp enable", args: "NAME [--begin | --code CODE]",
			summary: "turn on TOTP: shows a QR code, then asks for a first code (--begin: only show; --code: only confirm)",
			run:     totpEnable, dialogue: totpEnableDialogue},
		{words: "user totp disable", args: "NAME [--code CODE | --force]",
			summary: "turn off TOTP after asking for a current code; --force for a lost authenticator",
			run:     totpDisable, dialogue: totpDisableDialogue},
		{words: "user rm", args: "NAME", summary: "remove a user", run: userRemove},
		{words: "token create", args: "--user NAME --name LABEL [--expires 720h|90d|never] [--devices PATTERN]",
			summary: "make an API token, the user's proxy password; prints it once", run: tokenCreate},
		{words: "token list", args: "[--user NAME]", summary: "list API tokens", run: tokenList},
		{words: "token revoke", args: "ID", summary: "revoke an API token and close its streams", run: tokenRevoke},
		{words: "group add", args: "NAME [--max-devices N]", summary: "add a group", run: groupAdd},
		{words: "group list", summary: "list groups with their quotas and members", run: groupList},
		{words: "group set", args: "NAME --max-devices N", summary: "change a group's device quota (0: none)", run: groupSet},
		{words: "group rm", args: "NAME", summary: "remove a group no user, device or enrolment key is in", run: groupRemove},
		{words: "device add", args: "ID [--group G]... [--ports 80,22] [--name TEXT] [--http-port N] [--http-tls] [--secret-stdin]",
			summary: "add a device; prints its secret and the agent command line (--secret-stdin: adopt the device's own secret, not printed)",
			run:     deviceAdd, stdin: wantsSecretStdin},
		{words: "device import", args: "FILE.csv|- [--dry-run]",
			summary: "add devices with their own secrets from lines id,password,group[,name]; all or none, bad lines reported",
			run:     deviceImport, dialogue: deviceImportDialogue,
			// Each adopted password is hashed with argon2id (7.5 ms of a
			// core): 50,000 devices take minutes.
			timeout: 15 * time.Minute},
		{words: "device list", summary: "list devices and their status", run: deviceList},
		{words: "device show", args: "ID [--json]",
			summary: "a device's record and, while it is connected, its agent kind, properties, streams and traffic", run: deviceShow},
		{words: "device set", args: "ID [--group G]... [--no-groups] [--ports 80,22] [--no-ports] [--name TEXT] [--http-port N] [--http-tls|--no-http-tls]",
			summary: "change a device (--group replaces its groups, --ports its ports)", run: deviceSet},
		{words: "device rotate-secret", args: "ID",
			summary: "give a device a new secret; the old one stops working and its agent is dropped", run: deviceRotate},
		{words: "device disable", args: "ID", summary: "refuse a device's agent and close its tunnel", run: deviceDisable},
		{words: "device enable", args: "ID", summary: "accept a disabled device's agent again", run: deviceEnable},
		{words: "device rm", args: "ID", summary: "remove a device and close its tunnel", run: deviceRemove},
		{words: "device reset-host-key", args: "ID",
			summary: "forget a device's SSH host key, so the browser's SSH terminal trusts the next one it shows", run: deviceResetHostKey},
		{words: "enroll create", args: "--group G [--max N] [--expires 24h|never]",
			summary: "make a key agents enrol themselves with into a group; prints it once", run: enrollCreate},
		{words: "enroll list", summary: "list enrolment keys", run: enrollList},
		{words: "enroll rm", args: "ID", summary: "remove an enrolment key", run: enrollRemove},
		{words: "audit", args: "[--since 1h|7d|RFC3339] [--user U] [--device D] [--kind K] [--limit N] [--json]",
			summary: "show the audit log, oldest first", run: auditList},
		{words: "backup", args: "FILE",
			summary: "copy the database to FILE (which must not exist), consistently, while the reflector runs",
			run:     backup, dialogue: backupDialogue,
			// A copy of a large audit log takes a while on a slow disk.
			timeout: 15 * time.Minute},
	}
}

// lookup finds the command named by the first words of args and returns it
// with the remaining arguments.
func lookup(args []string) (*command, []string, bool) {
	var found *command
	n := 0
	for i := range commands {
		words := strings.Fields(commands[i].words)
		if len(words) > n && len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			found, n = &commands[i], len(words)
		}
	}
	if found == nil {
		return nil, nil, false
	}
	return found, args[n:], true
}

// family returns how many leading words of args name a command family
// ("user", "user totp") without naming a command.
func family(args []string) int {
	n := 0
	for _, cmd := range commands {
		words := strings.Fields(cmd.words)
		k := 0
		for k < len(words)-1 && k < len(args) && args[k] == words[k] {
			k++
		}
		n = max(n, k)
	}
	return n
}

// call is one execution of a command: its environment and streams.
type call struct {
	cmd    *command
	ctx    context.Context // ends with the server or the connection; for commands that wait
	svc    *ops.Service
	as     ops.Caller // who the operations act for: ops.Local(), "local" in the audit log
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
		n := family(args)
		switch {
		case len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help":
			usage(stderr, nil)
		case n > 0 && (n == len(args) || strings.HasPrefix(args[n], "-")):
			// "reflector group", "reflector user totp --help"
			fmt.Fprintf(stderr, "reflector: %s: missing subcommand\n", strings.Join(args[:n], " "))
			usage(stderr, args[:n])
		default:
			fmt.Fprintf(stderr, "reflector: unknown command %q\n", strings.Join(args[:n+1], " "))
			usage(stderr, args[:n])
		}
		return exitUsage
	}
	if env.Ops == nil {
		// A wiring mistake, not a user's: say so rather than panic.
		fmt.Fprintf(stderr, "reflector: %s: no store to run against\n", cmd.words)
		return exitFailure
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	c := &call{cmd: cmd, ctx: ctx, svc: env.Ops, as: ops.Local(), stdin: stdin, stdout: stdout, stderr: stderr}
	return cmd.run(c, rest)
}

// usage writes the list of commands, or of one family's ("user totp").
func usage(w io.Writer, family []string) {
	fmt.Fprintln(w, "usage: reflector <command> [arguments]")
	fmt.Fprintln(w)
	writeCommands(w, family)
}

// Usage writes the list of admin commands, for the program's own help.
func Usage(w io.Writer) { writeCommands(w, nil) }

// writeCommands lists the commands whose words start with family (all for
// nil), a blank line between families.
func writeCommands(w io.Writer, family []string) {
	fmt.Fprintln(w, "admin commands (run inside the reflector when one runs on the data directory):")
	last := ""
	for _, cmd := range commands {
		words := strings.Fields(cmd.words)
		if len(words) < len(family) || !slices.Equal(words[:len(family)], family) {
			continue
		}
		if last != "" && words[0] != last {
			fmt.Fprintln(w)
		}
		last = words[0]
		fmt.Fprintf(w, "  %s\n", strings.TrimSpace(cmd.words+" "+cmd.args))
		fmt.Fprintf(w, "        %s\n", cmd.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags may come before or after the positional argument; -x and --x are the same.")
	fmt.Fprintln(w, "Durations take s, m, h and d (90d); -h after a command shows its flags.")
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

// orDash returns s, or "-" for an empty table cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// expiry describes an expiry time for tables: "never", the time, or the
// time with "(expired)".
func expiry(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "never"
	case !t.After(now):
		return ops.DateTime(t) + " (expired)"
	}
	return ops.DateTime(t)
}
