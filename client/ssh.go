package client

import (
	"runtime"
	"strconv"
	"strings"
)

// ProxyCommand is the ssh ProxyCommand that runs exe's connect to port of
// whatever host ssh is asked for (%h); port 0 is ssh's own (%p: its -p,
// its configuration, else 22). exe is quoted as one word: for sh, which
// OpenSSH runs the line with on Unix; in double quotes on Windows, which
// Win32-OpenSSH and cmd.exe both read as one word. A '%' in exe is
// doubled, since ssh expands % tokens.
func ProxyCommand(exe string, port int) string {
	p := "%p"
	if port != 0 {
		p = strconv.Itoa(port)
	}
	return quoteArg(strings.ReplaceAll(exe, "%", "%%")) + " connect %h " + p
}

// quoteArg quotes s as one word for ssh's ProxyCommand; a word of only
// safe characters stays as it is.
func quoteArg(s string) string {
	if runtime.GOOS == "windows" {
		return `"` + s + `"`
	}
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SplitTarget reads ssh's [user@]host, as in pi@pump-17 or
// pi@pump-17.devices.example.com: the user ("" when none) and the host.
func SplitTarget(s string) (user, host string) {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}
