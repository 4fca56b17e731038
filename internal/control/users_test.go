package control

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestUserAddAndRemoveAreAudited(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	addGroups(t, env, "ops")
	mustRun(t, env, "", "user", "add", "alice", "--admin", "--group", "ops")
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditUserAdd, User: "alice", Reason: "admin, groups ops"})
	if changed.Load() != 0 {
		t.Error("AccessChanged called by user add, which takes nothing away")
	}
	mustRun(t, env, "", "user", "rm", "alice")
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditUserRm, User: "alice"})
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times by user rm, want 1", changed.Load())
	}
}

func TestUserSetChangesRoleAndReplacesGroups(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	addGroups(t, env, "ops", "lab", "field")
	mustRun(t, env, "", "user", "add", "bob", "--group", "field")

	out := mustRun(t, env, "", "user", "set", "--group", "ops", "bob", "--group", "lab,ops", "-role=admin")
	if out != "user bob updated (groups lab,ops, role admin)\n" {
		t.Errorf("stdout %q", out)
	}
	u, err := env.Store.User("bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != store.RoleAdmin || !slices.Equal(u.Groups, []string{"lab", "ops"}) {
		t.Errorf("user %+v", u)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditUserSet, User: "bob", Reason: "groups lab,ops, role admin"})
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1", changed.Load())
	}

	if out := mustRun(t, env, "", "user", "set", "bob", "--no-groups", "--role", "user"); out != "user bob updated (no groups, role user)\n" {
		t.Errorf("stdout %q", out)
	}
	if u, _ := env.Store.User("bob"); u.Role != store.RoleUser || len(u.Groups) != 0 {
		t.Errorf("user %+v", u)
	}
}

func TestUserSetRefusesBadInputAndChangesNothing(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	addGroups(t, env, "ops")
	mustRun(t, env, "", "user", "add", "bob", "--group", "ops")
	before := countAudit(t, env, store.AuditUserSet)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"bob"}, 2, "nothing to change: give --role, --group or --no-groups"},
		{[]string{"bob", "--role", "root"}, 2, `invalid value "root" for flag -role: unknown role "root": want admin or user`},
		{[]string{"bob", "--group", "ops", "--no-groups"}, 2, "--group and --no-groups exclude each other"},
		{[]string{"bob", "--group", ","}, 2, "--group needs a group name"},
		{[]string{"--role", "admin"}, 2, "missing argument"},
		// A group that does not exist fails before the role changes.
		{[]string{"bob", "--role", "admin", "--group", "nope"}, 1, `group "nope": not found`},
		{[]string{"nobody", "--role", "admin"}, 1, "not found"},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, env, "", append([]string{"user", "set"}, tt.args...)...)
		if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: code %d stdout %q stderr %q; want %d, %q", tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
	}
	u, err := env.Store.User("bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.Role != store.RoleUser || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Errorf("user changed by failed commands: %+v", u)
	}
	if n := countAudit(t, env, store.AuditUserSet); n != before {
		t.Errorf("%d user.set events, want %d", n, before)
	}
	if changed.Load() != 0 {
		t.Errorf("AccessChanged called %d times by failed commands", changed.Load())
	}
}

func TestUserPasswd(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	mustRun(t, env, "old-password\n", "user", "add", "alice", "--password-stdin")

	out := mustRun(t, env, "", "user", "passwd", "alice")
	m := regexp.MustCompile(`^password for alice changed\npassword for alice: ([A-Za-z0-9_-]{22}) \(shown once\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout %q", out)
	}
	if _, err := env.Store.CheckPassword(context.Background(), "alice", m[1]); err != nil {
		t.Errorf("generated password: %v", err)
	}
	if _, err := env.Store.CheckPassword(context.Background(), "alice", "old-password"); err == nil {
		t.Error("old password still works")
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditUserSet, User: "alice", Reason: "password changed"})
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1", changed.Load())
	}

	if out := mustRun(t, env, "chosen one\r\n", "user", "passwd", "--password-stdin", "alice"); out != "password for alice changed\n" {
		t.Errorf("--password-stdin: stdout %q", out)
	}
	if _, err := env.Store.CheckPassword(context.Background(), "alice", "chosen one"); err != nil {
		t.Errorf("password from stdin: %v", err)
	}

	for _, tt := range []struct {
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"\n", []string{"alice", "--password-stdin"}, 1, "set password for alice: empty password on stdin"},
		{"", []string{"nobody"}, 1, "not found"},
		{"", nil, 2, "usage: reflector user passwd NAME [--password-stdin]"},
	} {
		if code, _, stderr := run(t, env, tt.stdin, append([]string{"user", "passwd"}, tt.args...)...); code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: code %d stderr %q", tt.args, code, stderr)
		}
	}
}
