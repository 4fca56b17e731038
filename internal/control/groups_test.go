package control

import (
	"regexp"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestGroupCommands(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)

	if out := mustRun(t, env, "", "group", "add", "ops", "--max-devices", "2"); out != "group ops added (at most 2 devices)\n" {
		t.Errorf("group add: %q", out)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditGroupAdd, Group: "ops", Reason: "at most 2 devices"})
	mustRun(t, env, "", "group", "add", "lab")
	mustRun(t, env, "", "user", "add", "alice", "--group", "ops")
	mustRun(t, env, "", "device", "add", "pump-1", "--group", "ops")
	mustRun(t, env, "", "device", "add", "pump-2", "--group", "ops")

	// The quota holds at device add.
	if code, _, stderr := run(t, env, "", "device", "add", "pump-3", "--group", "ops"); code != 1 || !strings.Contains(stderr, "quota") {
		t.Errorf("device add over quota: code %d stderr %q", code, stderr)
	}

	list := mustRun(t, env, "", "group", "list")
	for _, re := range []string{`(?m)^NAME +MAX DEVICES +USERS +DEVICES$`, `(?m)^lab +- +0 +0$`, `(?m)^ops +2 +1 +2$`} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("group list lacks %s:\n%s", re, list)
		}
	}

	if out := mustRun(t, env, "", "group", "set", "ops", "--max-devices", "3"); out != "group ops updated (at most 3 devices)\n" {
		t.Errorf("group set: %q", out)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditGroupSet, Group: "ops", Reason: "at most 3 devices"})
	mustRun(t, env, "", "device", "add", "pump-3", "--group", "ops")

	// A quota below the members is allowed, with a note.
	code, stdout, stderr := run(t, env, "", "group", "set", "ops", "-max-devices=1")
	if code != 0 || stdout != "group ops updated (at most 1 device)\n" || !strings.Contains(stderr, "already has 3 devices") {
		t.Errorf("quota below members: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	if out := mustRun(t, env, "", "group", "set", "ops", "--max-devices", "0"); out != "group ops updated (no device limit)\n" {
		t.Errorf("group set 0: %q", out)
	}

	// Only an empty group goes.
	if code, _, stderr := run(t, env, "", "group", "rm", "ops"); code != 1 || !strings.Contains(stderr, "still in use") {
		t.Errorf("rm non-empty: code %d stderr %q", code, stderr)
	}
	if out := mustRun(t, env, "", "group", "rm", "lab"); out != "group lab removed\n" {
		t.Errorf("group rm: %q", out)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditGroupRm, Group: "lab"})
	if changed.Load() != 0 {
		t.Errorf("AccessChanged called %d times by group commands, which take nothing away", changed.Load())
	}
}

func TestGroupCommandsRefuseBadInput(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"group", "add", "x", "--max-devices", "-1"}, 2, "--max-devices -1: want 0 (no limit) or more"},
		{[]string{"group", "add", "x", "--max-devices", "many"}, 2, `invalid value "many"`},
		{[]string{"group", "add"}, 2, "missing argument"},
		{[]string{"group", "add", "ops"}, 1, "already exists"},
		{[]string{"group", "add", "Bad Name!"}, 1, "invalid"},
		{[]string{"group", "set", "ops"}, 2, "nothing to change: give --max-devices"},
		{[]string{"group", "set", "ops", "--max-devices", "-3"}, 2, "want 0 (no limit) or more"},
		{[]string{"group", "set", "nope", "--max-devices", "3"}, 1, "not found"},
		{[]string{"group", "rm", "nope"}, 1, "not found"},
		{[]string{"group", "list", "extra"}, 2, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		if code, _, stderr := run(t, env, "", tt.args...); code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: code %d stderr %q; want %d, %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
	if n := countAudit(t, env, "group."); n != 0 {
		t.Errorf("%d group events after failures", n)
	}
}
