// Command remote reaches devices through a Reflector from a laptop: it logs
// in, lists devices, forwards local ports to device ports, bridges stdin
// and stdout to a device port for ssh's ProxyCommand, and runs ssh, scp,
// sftp and a VNC viewer through the reflector. docs/laptop.md is its
// manual.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/reflector-dev/reflector/client"
)

const usage = `remote reaches devices through a Reflector.

  remote login [URL]                      log in: ask user, password (and TOTP code), keep a token
  remote logout                           revoke the token and forget it
  remote devices [--online] [--json]      list the devices you may reach
  remote forward DEVICE L:R [L:R…] [--bind ADDR]
                                          forward local ports to device ports
  remote connect DEVICE PORT              bridge stdin/stdout to a device port (ssh ProxyCommand)
  remote ssh [-l USER] [--port N] [USER@]DEVICE [ssh args…]
  remote scp [--port N] [scp args…]       e.g. remote scp pi@pump-17:file .
  remote sftp [-l USER] [--port N] [USER@]DEVICE [sftp args…]
                                          ssh, scp and sftp through the reflector;
                                          remote's options first, the tool's after
  remote vnc DEVICE [--port N]            forward the VNC port and start vncviewer

Options of every command:
  -R, --url URL          the reflector (REMOTE_URL; default: the last login)
  -u, --user NAME        the user (REMOTE_USER, REMOTE_USERNAME)
  -t, --token TOKEN      an API token (REMOTE_TOKEN) instead of the login's
  --fingerprint sha256:… trust only this certificate (REMOTE_FINGERPRINT)
  --ca-file FILE         trust only certificates of these authorities (REMOTE_CA_FILE)

DEVICE is a device id (pump-17), or a name under the reflector's domain
(pump-17.devices.example.com). Credentials are kept in
$XDG_CONFIG_HOME/reflector/credentials; docs/laptop.md has the details.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, *env, []string) error{
		"login": cmdLogin, "logout": cmdLogout, "devices": cmdDevices,
		"forward": cmdForward, "connect": cmdConnect, "vnc": cmdVNC,
		"ssh": cmdSSH, "scp": cmdSCP, "sftp": cmdSFTP,
	}
	name := args[0]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "remote: unknown command %q\n\n%s", name, usage)
		return 2
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	err := cmd(ctx, e, args[1:])
	var exit exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return int(exit)
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "remote %s: %v\n", name, strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	}
	fmt.Fprintf(stderr, "remote: %s\n", explain(err))
	return 1
}

// exitCode is a command's exit code passed through (ssh's).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// errUsage marks a wrong command line.
var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// explained is an error whose text already says what to do.
type explained struct{ error }

func (e explained) Unwrap() error { return e.error }

// explain adds to err what the user can do about it, in the same line.
func explain(err error) string {
	msg := err.Error()
	var done explained
	switch {
	case errors.As(err, &done):
	case errors.Is(err, client.ErrFingerprintChanged), errors.Is(err, client.ErrUnknownCertificate):
		// The error says it all.
	case errors.Is(err, client.ErrBadCredentials):
		msg += ": the token is wrong, expired or revoked; run 'remote login' again"
	case errors.Is(err, client.ErrNotLoggedIn):
	case errors.Is(err, client.ErrUnknownDevice):
		msg += ": no such device, or not one of yours (remote devices lists them)"
	}
	return msg
}

// env is what commands share: the standard streams, and the common
// options once parsed.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	url, user, token, fingerprint, caFile string
	// fromFile is the login the credentials came from (nil: flags or
	// environment).
	fromFile *client.Login
}

// commonFlags adds the options of every command to fs.
func (e *env) commonFlags(fs *flag.FlagSet) {
	for _, n := range []string{"R", "url"} {
		fs.StringVar(&e.url, n, "", "the reflector's URL")
	}
	for _, n := range []string{"u", "user"} {
		fs.StringVar(&e.user, n, "", "user name")
	}
	for _, n := range []string{"t", "token"} {
		fs.StringVar(&e.token, n, "", "API token")
	}
	fs.StringVar(&e.fingerprint, "fingerprint", "", "the reflector certificate's SHA-256 fingerprint")
	fs.StringVar(&e.caFile, "ca-file", "", "PEM file of the certificate authorities to trust")
}

// newFlags is a flag set for command name. It prints nothing itself:
// run says what was wrong in one line (parseFlags), and -h prints usage.
func (e *env) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("remote "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.commonFlags(fs)
	return fs
}

// parseFlags is fs.Parse with its errors as usage errors; -h prints the
// usage and is flag.ErrHelp.
func (e *env) parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, usage)
		return err
	}
	return usageError("%v (remote help lists the options)", err)
}

// parseInterspersed parses flags anywhere among args (remote devices
// --online, remote forward pump-17 8022:22 --bind 0.0.0.0) and returns the
// other arguments. "--" ends the flags.
func (e *env) parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := e.parseFlags(fs, args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if len(args) > len(left) && args[len(args)-len(left)-1] == "--" {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// paths are the credentials and known-reflectors files.
func paths() (credentials, known string, err error) {
	dir, err := client.ConfigDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "credentials"), filepath.Join(dir, "known_reflectors"), nil
}

// getenv is the first of the variables that is set.
func getenv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// resolve completes the options from the environment and the credentials
// file (flags first, then REMOTE_* variables, then the file).
func (e *env) resolve() error {
	e.url = firstOf(e.url, getenv("REMOTE_URL"))
	e.user = firstOf(e.user, getenv("REMOTE_USER", "REMOTE_USERNAME"))
	e.token = firstOf(e.token, getenv("REMOTE_TOKEN"))
	e.fingerprint = firstOf(e.fingerprint, getenv("REMOTE_FINGERPRINT"))
	e.caFile = firstOf(e.caFile, getenv("REMOTE_CA_FILE"))
	if e.token == "" {
		credPath, _, err := paths()
		if err != nil {
			return err
		}
		creds, err := client.LoadCredentials(credPath)
		if err != nil {
			return err
		}
		if l, ok := creds.Find(e.url); ok && (e.user == "" || e.user == l.User) {
			e.url, e.user, e.token, e.fromFile = l.URL, l.User, l.Token, &l
		}
	}
	if e.url == "" {
		return fmt.Errorf("%w: no reflector: run 'remote login https://reflector.example.com:8443', or pass -R URL", client.ErrNotLoggedIn)
	}
	if e.token == "" {
		// macchina.io's tools take a password as the proxy password;
		// the reflector accepts one from users without TOTP.
		if pw := getenv("REMOTE_PASSWORD"); pw != "" && e.user != "" {
			e.token = pw
			return nil
		}
		return fmt.Errorf("%w to %s: run 'remote login %s', or set REMOTE_TOKEN", client.ErrNotLoggedIn, e.url, e.url)
	}
	return nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// client makes the client of the resolved options.
func (e *env) client() (*client.Client, error) {
	_, known, err := paths()
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{URL: e.url, User: e.user, Token: e.token,
		Trust: client.Trust{CAFile: e.caFile, Fingerprint: e.fingerprint, Known: client.KnownReflectors{Path: known}}})
}

// connected parses the common flags of a command that reaches the
// reflector, resolves the credentials and makes the client.
func (e *env) connected() (*client.Client, error) {
	if err := e.resolve(); err != nil {
		return nil, err
	}
	return e.client()
}
