package control

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// TOTP enrolment is a dialogue: show the secret, ask for a first code,
// confirm. The control socket carries one request and one answer with stdin
// sent up front, so Main runs the dialogue itself (totpEnableDialogue):
// "user totp enable NAME --begin", then the prompt on its own terminal, then
// "user totp enable NAME --code CODE" — on the server, or on the store it
// opened when no server runs, so both paths behave the same. Run given the
// command without either flag runs the same steps in one call.

// codePrompt asks for a TOTP code, on stderr so that stdout keeps only what
// the command prints.
const codePrompt = "enter the 6-digit code from your authenticator app: "

// maxCodeLine bounds the line read as a code: six digits and some spaces.
const maxCodeLine = 256

// totpFlags are the flags of "user totp enable" and "user totp disable".
// Main parses them too, to tell whether it must ask for a code.
type totpFlags struct {
	code  string
	begin bool // enable: start enrolment only
	force bool // disable: no code needed
}

func (f *totpFlags) define(fs *flag.FlagSet, enable bool) {
	if enable {
		fs.StringVar(&f.code, "code", "", "confirm a pending enrolment with this code from the authenticator app")
		fs.BoolVar(&f.begin, "begin", false, "only start enrolment: print the URL and QR code; confirm later with --code")
	} else {
		fs.StringVar(&f.code, "code", "", "a current code from the user's authenticator app")
		fs.BoolVar(&f.force, "force", false, "turn TOTP off without a code, for a user who lost their authenticator")
	}
}

// totpEnable: user totp enable NAME [--begin | --code CODE]
func totpEnable(c *call, args []string) int {
	fs := c.flags()
	var f totpFlags
	f.define(fs, true)
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	name := pos[0]
	if f.begin && f.code != "" {
		return c.usageError(fs, "--begin and --code exclude each other")
	}
	if f.code != "" {
		return c.confirmTOTP(name, f.code)
	}
	if code := c.beginTOTP(name); code != exitOK || f.begin {
		return code
	}
	entered, err := promptCode(c.ctx, c.stderr, c.stdin)
	if err != nil {
		return c.fail("enable TOTP for "+name, err)
	}
	if entered == "" {
		return noCode(c.stderr, name)
	}
	return c.confirmTOTP(name, entered)
}

// beginTOTP starts enrolment and shows the QR code, the URL and the key.
func (c *call) beginTOTP(name string) int {
	otpURL, err := c.svc.BeginTOTP(c.ctx, c.as, name)
	if err != nil {
		// Already enabled: "enable TOTP for NAME: TOTP is already enabled;
		// disable it first …", from ops.ErrTOTPEnabled.
		return c.fail("", err)
	}
	w := c.stdout
	fmt.Fprintf(w, "TOTP enrolment for %s started; scan this QR code with an authenticator app:\n", name)
	if err := writeQR(w, otpURL); err != nil {
		// The URL below still works; a QR code is a convenience.
		fmt.Fprintf(c.stderr, "reflector: note: no QR code: %v\n", err)
	}
	fmt.Fprintf(w, "or open this URL on the phone:\n  %s\n", otpURL)
	if key := otpKey(otpURL); key != "" {
		fmt.Fprintf(w, "or type this key into the app: %s\n", key)
	}
	return exitOK
}

// confirmTOTP switches TOTP on with the first code.
func (c *call) confirmTOTP(name, code string) int {
	what := "enable TOTP for " + name
	err := c.svc.ConfirmTOTP(c.ctx, c.as, name, code)
	switch {
	case errors.Is(err, ops.ErrMalformedCode):
		return c.fail(what, errors.New("wrong code: want the 6 digits the authenticator app shows; TOTP stays off"))
	case errors.Is(err, store.ErrBadCredentials):
		return c.fail(what, errors.New("wrong code; TOTP stays off"))
	case errors.Is(err, ops.ErrTOTPEnabled):
		return c.fail(what, errors.New("TOTP is already enabled"))
	case errors.Is(err, ops.ErrNoEnrolment):
		return c.fail(what, fmt.Errorf("no enrolment pending; start one with: reflector user totp enable %s", ops.ShellQuote(name)))
	case err != nil:
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "TOTP enabled for %s\n", name)
	fmt.Fprintf(c.stderr, "reflector: note: %s's password is no longer a proxy password; "+
		"give them an API token: reflector token create --user %s --name LABEL\n", name, ops.ShellQuote(name))
	return exitOK
}

// totpDisable: user totp disable NAME [--code CODE | --force]
func totpDisable(c *call, args []string) int {
	fs := c.flags()
	var f totpFlags
	f.define(fs, false)
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	name := pos[0]
	what := "disable TOTP for " + name
	if f.force && f.code != "" {
		return c.usageError(fs, "--code and --force exclude each other")
	}
	if !f.force && f.code == "" {
		// Ask only someone who has TOTP to turn off: look first (a read),
		// so a user without it is told so rather than prompted.
		u, err := c.svc.User(c.ctx, c.as, name)
		if err != nil {
			return c.fail("", err)
		}
		if !u.TOTP {
			return c.fail(what, errors.New("TOTP is not enabled"))
		}
		if f.code, err = promptCode(c.ctx, c.stderr, c.stdin); err != nil {
			return c.fail(what, err)
		}
		if f.code == "" {
			return c.fail(what, errors.New("no code entered; TOTP stays on"))
		}
	}
	pendingOnly, err := c.svc.DisableTOTP(c.ctx, c.as, name, f.code, f.force)
	switch {
	case errors.Is(err, ops.ErrMalformedCode):
		return c.fail(what, errors.New("wrong code: want the 6 digits the authenticator app shows; TOTP stays on"))
	case errors.Is(err, store.ErrBadCredentials):
		return c.fail(what, errors.New("wrong code; TOTP stays on"))
	case err != nil:
		// Not enabled: "disable TOTP for NAME: TOTP is not enabled", from
		// ops.ErrTOTPNotEnabled.
		return c.fail("", err)
	}
	if pendingOnly {
		fmt.Fprintf(c.stdout, "pending TOTP enrolment for %s cancelled\n", name)
		return exitOK
	}
	fmt.Fprintf(c.stdout, "TOTP disabled for %s\n", name)
	return exitOK
}

// totpEnableDialogue is how Main runs "user totp enable": unless --begin or
// --code is given (or the arguments are wrong, which the command itself
// reports), it begins, prompts on this terminal and confirms, in two
// requests.
func totpEnableDialogue(s *session, cmd *command, args []string, stdin io.Reader) int {
	words := strings.Fields(cmd.words)
	var f totpFlags
	name, ok := parseQuietly(args, func(fs *flag.FlagSet) { f.define(fs, true) })
	if !ok || f.begin || f.code != "" {
		return s.do(append(words, args...), nil)
	}
	// Flags go before the arguments: after a "--" they would be positional.
	if code := s.do(slices.Concat(words, []string{"--begin"}, args), nil); code != exitOK {
		return code
	}
	code, err := promptCode(s.ctx, s.stderr, stdin)
	if err != nil {
		fmt.Fprintf(s.stderr, "reflector: enable TOTP for %s: %v\n", name, err)
		return exitFailure
	}
	if code == "" {
		return noCode(s.stderr, name)
	}
	return s.do(slices.Concat(words, []string{"--code=" + code}, args), nil)
}

// totpDisableDialogue is how Main runs "user totp disable": without --code
// or --force it prompts here and sends the code along.
func totpDisableDialogue(s *session, cmd *command, args []string, stdin io.Reader) int {
	words := strings.Fields(cmd.words)
	var f totpFlags
	name, ok := parseQuietly(args, func(fs *flag.FlagSet) { f.define(fs, false) })
	if !ok || f.force || f.code != "" {
		return s.do(append(words, args...), nil)
	}
	code, err := promptCode(s.ctx, s.stderr, stdin)
	if err != nil {
		fmt.Fprintf(s.stderr, "reflector: disable TOTP for %s: %v\n", name, err)
		return exitFailure
	}
	if code == "" {
		fmt.Fprintf(s.stderr, "reflector: disable TOTP for %s: no code entered; TOTP stays on\n", name)
		return exitFailure
	}
	return s.do(slices.Concat(words, []string{"--code=" + code}, args), nil)
}

// parseQuietly parses a command's arguments on the client to learn its
// flags, and returns the single positional argument. It reports false for
// anything the command would refuse (or -h), leaving the reply to it.
func parseQuietly(args []string, define func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return "", false
	}
	return pos[0], true
}

// noCode reports an enrolment left pending because no code was entered.
func noCode(w io.Writer, name string) int {
	fmt.Fprintf(w, "reflector: enable TOTP for %s: no code entered; TOTP stays off "+
		"(confirm later with: reflector user totp enable %s --code CODE)\n", name, ops.ShellQuote(name))
	return exitFailure
}

// promptCode writes the prompt to w and reads one line from r. A canceled
// ctx (Ctrl-C in cmd/reflector) ends the wait; the reading goroutine is
// then left to the process's exit.
func promptCode(ctx context.Context, w io.Writer, r io.Reader) (string, error) {
	fmt.Fprint(w, codePrompt)
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readLine(r, maxCodeLine)
		done <- result{line, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return "", fmt.Errorf("read code: %w", res.err)
		}
		return strings.TrimSpace(res.line), nil
	case <-ctx.Done():
		fmt.Fprintln(w)
		return "", ctx.Err()
	}
}

// otpKey returns the base32 secret of an otpauth:// URL in groups of four,
// as apps take it when typed, or "" if there is none.
func otpKey(otpURL string) string {
	u, err := url.Parse(otpURL)
	if err != nil {
		return ""
	}
	secret := u.Query().Get("secret")
	var groups []string
	for len(secret) > 4 {
		groups = append(groups, secret[:4])
		secret = secret[4:]
	}
	if secret != "" {
		groups = append(groups, secret)
	}
	return strings.Join(groups, " ")
}
