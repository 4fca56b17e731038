package control

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// backup: backup FILE
//
// The copy is written by whoever holds the database: the running server
// (as its user, so FILE must be a path it can write), or this process when
// no server runs. FILE arrives absolute: backupDialogue makes it so on the
// admin's side.
func backup(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	path := pos[0]
	if !filepath.IsAbs(path) {
		return c.usageError(fs, "backup file %q: want an absolute path", path)
	}
	size, err := c.svc.Backup(c.ctx, c.as, path)
	if err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "database copied to %s (%d bytes); to restore, stop the reflector and put it in a data directory as reflector.db\n", path, size)
	return exitOK
}

// backupDialogue turns a relative FILE into an absolute one on this side:
// the server's working directory is not the admin's.
func backupDialogue(s *session, cmd *command, args []string, _ io.Reader) int {
	words := strings.Fields(cmd.words)
	path, ok := parseQuietly(args, func(*flag.FlagSet) {})
	if !ok || path == "" {
		return s.do(append(words, args...), nil)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		fmt.Fprintf(s.stderr, "reflector: backup: %v\n", err)
		return exitFailure
	}
	return s.do(append(words, abs), nil)
}
