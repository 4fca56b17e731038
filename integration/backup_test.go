package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An admin backs up a running reflector from their own directory, and the
// copy restores into a data directory that holds what the original did.
func TestBackupOfARunningReflectorRestores(t *testing.T) {
	data := t.TempDir()
	serveProc(t, data, freePort(t))
	if out, err := reflectorCmd(t, "pw-of-alice\n", "user", "add", "alice", "--password-stdin", "--data", data); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}

	// A relative FILE is the admin's, not the server's working directory.
	adminDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "reflector"), "backup", "copy.db", "--data", data)
	cmd.Dir = adminDir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), filepath.Join(adminDir, "copy.db")) {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// Never over an existing file.
	if out, err := reflectorCmd(t, "", "backup", filepath.Join(adminDir, "copy.db"), "--data", data); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("backup over the copy: %v\n%s", err, out)
	}
	if out, err := reflectorCmd(t, "", "audit", "--kind", "backup", "--data", data); err != nil || !strings.Contains(out, "copy.db") {
		t.Fatalf("audit of the backup: %v\n%s", err, out)
	}

	restored := t.TempDir()
	if err := os.Rename(filepath.Join(adminDir, "copy.db"), filepath.Join(restored, "reflector.db")); err != nil {
		t.Fatal(err)
	}
	if out, err := reflectorCmd(t, "", "user", "list", "--data", restored); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("users of the restored copy: %v\n%s", err, out)
	}
}
