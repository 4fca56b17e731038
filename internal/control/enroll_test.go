package control

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

var enrollKeyRE = regexp.MustCompile(`key \(shown once\): (rfe_\S+)\n`)

func TestEnrollCreatePrintsKeyAndAgentLineAndKeyEnrolls(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	out := mustRun(t, env, "", "enroll", "create", "--group", "ops", "--max", "2", "--expires", "1h")
	m := enrollKeyRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no key in:\n%s", out)
	}
	key := m[1]
	keys, err := env.Store.EnrollKeys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("EnrollKeys: %v %v", keys, err)
	}
	rec := keys[0]
	for _, want := range []string{
		"enrolment key for group ops created (id " + rec.ID + ", up to 2 devices, expires ",
		"  REFLECTOR_ENROLL_KEY='" + key + "' reflector-agent --reflector https://reflector.example:8443 --device DEVICE-ID --ports 80 --fingerprint " + testFingerprint + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if d := time.Until(rec.Expires) - time.Hour; d.Abs() > time.Minute {
		t.Errorf("expires %v, want in an hour", rec.Expires)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditEnrollKey, Group: "ops", Reason: "key " + rec.ID + ", up to 2 devices"})

	if _, _, err := env.Store.Enroll(key, "pump-1"); err != nil {
		t.Fatalf("Enroll with the printed key: %v", err)
	}
	if list := mustRun(t, env, "", "enroll", "list"); !regexp.MustCompile(`(?m)^` + rec.ID + ` +ops +1/2 +\S+ \S+ +\S+ \S+$`).MatchString(list) {
		t.Errorf("enroll list:\n%s", list)
	}

	if out := mustRun(t, env, "", "enroll", "rm", rec.ID); out != "enrolment key "+rec.ID+" removed\n" {
		t.Errorf("enroll rm: %q", out)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditEnrollRm, Group: "ops", Reason: "key " + rec.ID})
	if _, _, err := env.Store.Enroll(key, "pump-2"); !errors.Is(err, store.ErrBadCredentials) {
		t.Errorf("removed key: %v", err)
	}
	if code, _, stderr := run(t, env, "", "enroll", "rm", rec.ID); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("rm twice: code %d stderr %q", code, stderr)
	}
}

func TestEnrollCreateExpiresInADayUnlessTold(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	out := mustRun(t, env, "", "enroll", "create", "--group", "ops")
	if !strings.Contains(out, "(id ") || !strings.Contains(out, "any number of devices, expires ") {
		t.Errorf("stdout:\n%s", out)
	}
	mustRun(t, env, "", "enroll", "create", "--group", "ops", "--expires", "never", "--max", "1")
	keys, err := env.Store.EnrollKeys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("EnrollKeys: %v %v", keys, err)
	}
	if d := time.Until(keys[0].Expires) - 24*time.Hour; d.Abs() > time.Minute {
		t.Errorf("default expiry %v, want in 24h", keys[0].Expires)
	}
	if !keys[1].Expires.IsZero() || keys[1].Max != 1 {
		t.Errorf("--expires never --max 1: %+v", keys[1])
	}
	if list := mustRun(t, env, "", "enroll", "list"); !strings.Contains(list, " never") || !strings.Contains(list, "0/1") {
		t.Errorf("enroll list:\n%s", list)
	}
}

func TestEnrollCreateRefusesBadInput(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "missing --group"},
		{[]string{"--group", "ops", "--max", "-1"}, 2, "--max -1: want 0 (no limit) or more"},
		{[]string{"--group", "ops", "--expires", "tomorrow"}, 2, `bad duration "tomorrow"`},
		{[]string{"--group", "ops", "--expires", "-24h"}, 2, "want a positive duration"},
		{[]string{"--group", "nope"}, 1, "not found"},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, env, "", append([]string{"enroll", "create"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) || strings.Contains(stdout, store.EnrollKeyPrefix) {
			t.Errorf("%q: code %d stdout %q stderr %q; want %d, %q", tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
	}
	if n := countAudit(t, env, store.AuditEnrollKey); n != 0 {
		t.Errorf("%d enroll.create events after failures", n)
	}
}
