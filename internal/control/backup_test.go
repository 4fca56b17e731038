package control

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestBackupWantsOneAbsolutePathAndAuditsTheCopy(t *testing.T) {
	env := newTestEnv(t)
	for _, args := range [][]string{{"backup"}, {"backup", "relative.db"}, {"backup", "/a", "/b"}} {
		if code, _, errOut := run(t, env, "", args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (usage)\n%s", args, code, exitUsage, errOut)
		}
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	code, out, errOut := run(t, env, "", "backup", path)
	if code != exitOK || !strings.Contains(out, path) {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	if n := countAudit(t, env, store.AuditBackup); n != 1 {
		t.Fatalf("%d backup events, want 1", n)
	}
	if code, _, errOut := run(t, env, "", "backup", path); code != exitFailure || !strings.Contains(errOut, "exists") {
		t.Fatalf("backup over the copy: exit %d\n%s", code, errOut)
	}
}
