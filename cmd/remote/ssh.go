package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"

	"github.com/reflector-dev/reflector/client"
)

// cmdSSH runs ssh to the device with this binary's connect as the
// ProxyCommand: remote ssh [-l USER] [--port N] [USER@]DEVICE [ssh args…].
func cmdSSH(ctx context.Context, e *env, args []string) error {
	return runTool(ctx, e, "ssh", args, true)
}

// cmdSCP runs scp with the ProxyCommand: remote scp pi@pump-17:file .
func cmdSCP(ctx context.Context, e *env, args []string) error {
	return runTool(ctx, e, "scp", args, false)
}

// cmdSFTP runs sftp with the ProxyCommand.
func cmdSFTP(ctx context.Context, e *env, args []string) error {
	return runTool(ctx, e, "sftp", args, true)
}

// ourFlags are the options of ssh, scp and sftp that are remote's: they
// come before the tool's own, which pass through untouched. Each takes a
// value.
var ourFlags = map[string]bool{"R": true, "url": true, "u": true, "user": true, "t": true, "token": true,
	"fingerprint": true, "ca-file": true, "port": true, "l": true}

// splitOurs splits args into remote's leading options and the rest. With
// login true, -l is ours (ssh's and sftp's login name; scp has none).
func splitOurs(args []string, login bool) (ours, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ours, args[i+1:]
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !ourFlags[name] || (name == "l" && !login) {
			return ours, args[i:]
		}
		ours = append(ours, a)
		if !hasValue && i+1 < len(args) {
			ours = append(ours, args[i+1])
			i++
		}
	}
	return ours, nil
}

// runTool runs ssh, scp or sftp with ProxyCommand set to `remote connect
// %h PORT` and passes its exit code through. The tool's ProxyCommand gets
// the reflector and credentials of this command through REMOTE_*
// variables, so -R, -t and the rest given here hold there too.
func runTool(ctx context.Context, e *env, tool string, args []string, login bool) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	ours, rest := splitOurs(args, login)
	fs := e.newFlags(tool)
	port := fs.Int("port", 0, "the device's SSH port (default: ssh's own, -p or 22)")
	user := ""
	if login {
		fs.StringVar(&user, "l", "", "the login name on the device")
	}
	if err := e.parseFlags(fs, ours); err != nil {
		return err
	}
	if len(rest) == 0 {
		return usageError("want remote %s [remote options] %s arguments, e.g. pi@pump-17", tool, tool)
	}
	if err := e.resolve(); err != nil {
		return err
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		hint := "Debian/Ubuntu: sudo apt install openssh-client; macOS has it; Windows: Settings > Optional features > OpenSSH Client"
		return fmt.Errorf("%s is not installed (not found on PATH): %s", tool, hint)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program's path for the ProxyCommand: %w", err)
	}
	toolArgs := []string{"-o", "ProxyCommand=" + client.ProxyCommand(exe, *port)}
	if user != "" {
		// -o User, not -l: sftp has no -l.
		toolArgs = append(toolArgs, "-o", "User="+user)
	}
	toolArgs = append(toolArgs, rest...)
	cmd := exec.Command(path, toolArgs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	cmd.Env = append(os.Environ(), "REMOTE_URL="+e.url)
	if e.fromFile == nil {
		cmd.Env = append(cmd.Env, "REMOTE_USER="+e.user, "REMOTE_TOKEN="+e.token)
	}
	if e.fingerprint != "" {
		cmd.Env = append(cmd.Env, "REMOTE_FINGERPRINT="+e.fingerprint)
	}
	if e.caFile != "" {
		cmd.Env = append(cmd.Env, "REMOTE_CA_FILE="+e.caFile)
	}
	// Ctrl-C is the tool's: it reaches ssh (same process group), and
	// remote waits for ssh to end rather than die under it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		code := exit.ExitCode()
		if code < 0 { // killed by a signal
			code = 255
		}
		return exitCode(code)
	}
	return fmt.Errorf("run %s: %w", tool, err)
}
