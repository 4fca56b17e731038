package control

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

const importFile = `# fleet moved from the old server
id,password,group,name
pump-1,s3cret-one,ops,Pump 1

pump-2,"with, comma",,
pump-3,plain-three,ops
`

func TestDeviceImportAddsAllWithTheirPasswords(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	path := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(path, []byte(importFile), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, env, "", "device", "import", path)
	if code != 0 || stdout != "imported 3 devices\n" {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
	for id, pw := range map[string]string{"pump-1": "s3cret-one", "pump-2": "with, comma", "pump-3": "plain-three"} {
		if _, err := env.Store.CheckDeviceSecret(context.Background(), id, pw); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if d, _ := env.Store.Device("pump-1"); d.Name != "Pump 1" || len(d.Groups) != 1 || d.Groups[0] != "ops" {
		t.Errorf("pump-1 stored as %+v", d)
	}
	if n := countAudit(t, env, store.AuditDeviceAdd); n != 3 {
		t.Errorf("%d device.add events, want 3", n)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: "pump-3", Reason: "imported"})
	noPasswords(t, stdout+stderr)
}

// noPasswords fails if out shows any password of importFile.
func noPasswords(t *testing.T, out string) {
	t.Helper()
	for _, pw := range []string{"s3cret-one", "with, comma", "plain-three", "hunter2", "topsecret"} {
		if strings.Contains(out, pw) {
			t.Errorf("output shows password %q:\n%s", pw, out)
		}
	}
}

func TestDeviceImportReportsEveryBadLineAndImportsNothing(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	mustRun(t, env, "", "device", "add", "old")
	file := strings.Join([]string{
		"pump-1,hunter2,ops",          // 1 fine
		"Bad_Id,hunter2,ops",          // 2 invalid id
		"pump-2,hunter2",              // 3 too few fields
		"# a comment",                 // 4
		"pump-1,topsecret,ops",        // 5 duplicate
		"old,hunter2,",                // 6 exists
		"pump-3,hunter2,nope",         // 7 unknown group
		"pump-4,,ops",                 // 8 empty password
		`pump-5,"top"secret",ops`,     // 9 bad quoting
		"pump-6,hunter2,ops,Six,more", // 10 too many fields
		"pump-7,hunter2,ops,Seven",    // 11 fine
	}, "\n") + "\n"
	code, stdout, stderr := run(t, env, file, "device", "import", "-")
	if code != 1 || stdout != "" {
		t.Fatalf("code %d stdout %q, want 1 and nothing", code, stdout)
	}
	for _, want := range []string{
		"line 2: device id invalid", "line 3: 2 fields", `line 5: device "pump-1" is on line 1 already`,
		`line 6: device "old" already exists`, `line 7: group "nope": not found`, "line 8: empty password",
		"line 9: ", "line 10: 5 fields", "8 lines refused; nothing imported", "groups must exist first",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, fine := range []string{"line 1:", "line 4:", "line 11:"} {
		if strings.Contains(stderr, fine) {
			t.Errorf("stderr blames a good line (%s):\n%s", fine, stderr)
		}
	}
	noPasswords(t, stderr)
	if devices, _ := env.Store.Devices(); len(devices) != 1 {
		t.Errorf("%d devices after a refused import, want only the old one", len(devices))
	}
	if n := countAudit(t, env, store.AuditDeviceAdd); n != 1 {
		t.Errorf("%d device.add events, want 1 (the old device)", n)
	}
}

func TestDeviceImportQuotaAndDryRun(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "group", "add", "small", "--max-devices", "2")
	file := "a1,pw1,small\na2,pw2,small\na3,pw3,small\n"
	code, _, stderr := run(t, env, file, "device", "import", "-")
	if code != 1 || !strings.Contains(stderr, `line 3: group "small": quota exhausted`) {
		t.Errorf("over quota: code %d stderr %q", code, stderr)
	}
	out := mustRun(t, env, "a1,pw1,small\n", "device", "import", "--dry-run", "-")
	if out != "1 device would be imported; nothing changed\n" {
		t.Errorf("dry run stdout %q", out)
	}
	if devices, _ := env.Store.Devices(); len(devices) != 0 {
		t.Errorf("dry run stored %d devices", len(devices))
	}
	if code, _, stderr := run(t, env, "# only a comment\n", "device", "import", "-"); code != 1 || !strings.Contains(stderr, "no devices") {
		t.Errorf("empty file: code %d stderr %q", code, stderr)
	}
	big := strings.Repeat("#", maxImportBytes+1)
	if code, _, stderr := run(t, env, big, "device", "import", "-"); code != 1 || !strings.Contains(stderr, "larger than") {
		t.Errorf("big file: code %d stderr %q", code, stderr)
	}
}

func TestDeviceAddSecretStdinAdoptsAndNeverShowsIt(t *testing.T) {
	env := newTestEnv(t)
	code, stdout, stderr := run(t, env, "hunter2\nrest\n", "device", "add", "pump-17", "--secret-stdin", "--ports", "22")
	if code != 0 {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "REFLECTOR_DEVICE_SECRET="+secretPlaceholder+" reflector-agent") {
		t.Errorf("stdout lacks the agent line with the placeholder:\n%s", stdout)
	}
	noPasswords(t, stdout+stderr)
	if _, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", "hunter2"); err != nil {
		t.Errorf("adopted secret: %v", err)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: "pump-17", Reason: "own secret"})

	if code, _, stderr := run(t, env, "\n", "device", "add", "pump-18", "--secret-stdin"); code != 1 || !strings.Contains(stderr, "empty secret") {
		t.Errorf("empty secret: code %d stderr %q", code, stderr)
	}
	if _, err := env.Store.Device("pump-18"); err == nil {
		t.Error("device with an empty secret was added")
	}
	for args, want := range map[string]bool{
		"--secret-stdin": true, "-secret-stdin": true, "--secret-stdin=false": false, "-- --secret-stdin": false, "--ports 22": false,
	} {
		if got := wantsSecretStdin(strings.Fields(args)); got != want {
			t.Errorf("wantsSecretStdin(%s) = %v", args, got)
		}
	}
}

func TestMainImportsAndAdoptsOverTheSocket(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	if err := s.AddGroup(store.Group{Name: "ops"}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := mainCmd(t, dir, "hunter2\n", "device", "add", "pump-17", "--secret-stdin")
	if code != 0 {
		t.Fatalf("device add: code %d stderr %q", code, stderr)
	}
	noPasswords(t, stdout+stderr)
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", "hunter2"); err != nil {
		t.Errorf("server's store: %v", err)
	}

	// The client reads the file: the server never sees the path (a file
	// in a directory only the client can read, relative to its own
	// working directory, would work the same).
	path := filepath.Join(t.TempDir(), "fleet.csv")
	if err := os.WriteFile(path, []byte(importFile), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = mainCmd(t, dir, "", "device", "import", path)
	if code != 0 || stdout != "imported 3 devices\n" {
		t.Fatalf("import: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-2", "with, comma"); err != nil {
		t.Errorf("server's store: %v", err)
	}
	// From stdin, with a bad line.
	code, stdout, stderr = mainCmd(t, dir, "pump-9,topsecret,ops\npump-1,topsecret,ops\n", "device", "import", "-")
	if code != 1 || stdout != "" || !strings.Contains(stderr, `line 2: device "pump-1" already exists`) || strings.Contains(stderr, "line 1") {
		t.Errorf("bad import: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	noPasswords(t, stderr)
	if _, err := s.Device("pump-9"); err == nil {
		t.Error("pump-9 imported from a refused file")
	}
	code, _, stderr = mainCmd(t, dir, "", "device", "import", filepath.Join(dir, "missing.csv"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: code %d stderr %q", code, stderr)
	}
	code, _, stderr = mainCmd(t, dir, "", "device", "import")
	if code != 2 || !strings.Contains(stderr, "usage: reflector device import") {
		t.Errorf("usage: code %d stderr %q", code, stderr)
	}
}

func TestMainImportsWithoutServer(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := mainCmd(t, dir, "pump-1,hunter2,\n", "device", "import", "-")
	if code != 0 || stdout != "imported 1 device\n" {
		t.Fatalf("code %d stdout %q stderr %q", code, stdout, stderr)
	}
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-1", "hunter2"); err != nil {
		t.Error(err)
	}
}
