package control

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

var tokenRE = regexp.MustCompile(`token \(shown once\): (rfl_\S+)\n`)

func TestTokenCreatePrintsTokenOnceAndItAuthenticates(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	stdout := mustRun(t, env, "", "token", "create", "--user", "alice", "--name", "laptop", "--expires", "90d", "--devices", "pump-*")
	m := tokenRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no token in:\n%s", stdout)
	}
	token := m[1]
	rec := lastToken(t, env.Store)
	for _, want := range []string{
		"token laptop for alice created (id " + rec.ID + ", expires ",
		", devices pump-*)\n",
		"use it as alice's proxy password, e.g.:\n",
		"  curl --proxy https://reflector.example:8443 --proxy-user 'alice:" + token + "' http://DEVICE/\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if d := time.Until(rec.Expires) - 90*24*time.Hour; d > time.Minute || d < -time.Minute {
		t.Errorf("expires %v, want in 90 days", rec.Expires)
	}
	cred, err := env.Store.Authenticate(context.Background(), "alice", token)
	if err != nil {
		t.Fatalf("Authenticate with the printed token: %v", err)
	}
	if cred.TokenID != rec.ID || cred.Devices != "pump-*" {
		t.Errorf("credential %+v", cred)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTokenCreate, User: "alice", Token: rec.ID, Reason: "name laptop"})

	// Listed without the secret.
	list := mustRun(t, env, "", "token", "list")
	if strings.Contains(list, token) || strings.Contains(list, token[len(store.TokenPrefix):]) {
		t.Errorf("token list shows the token:\n%s", list)
	}
	if !regexp.MustCompile(`(?m)^` + rec.ID + ` +alice +laptop +pump-\* +\d{4}-\d\d-\d\d \d\d:\d\d +\d{4}-\d\d-\d\d \d\d:\d\d +\d{4}-\d\d-\d\d \d\d:\d\d$`).MatchString(list) {
		// last used: Authenticate above recorded a use
		t.Errorf("token list:\n%s", list)
	}
}

func TestTokenCreateExpiryAndDeviceForms(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	tests := []struct {
		flags   []string
		expires time.Duration // 0: never
		example string        // the device in the curl line
	}{
		{nil, 0, "DEVICE"},
		{[]string{"--expires", "never"}, 0, "DEVICE"},
		{[]string{"--expires", "0"}, 0, "DEVICE"},
		{[]string{"--expires", "720h"}, 720 * time.Hour, "DEVICE"},
		{[]string{"-expires=1d12h"}, 36 * time.Hour, "DEVICE"},
		{[]string{"--devices", "pump-17"}, 0, "pump-17"},
	}
	for i, tt := range tests {
		name := "t" + string(rune('a'+i))
		stdout := mustRun(t, env, "", append([]string{"token", "create", "--user", "alice", "--name", name}, tt.flags...)...)
		toks, err := env.Store.Tokens("alice")
		if err != nil {
			t.Fatal(err)
		}
		var rec store.Token
		for _, tok := range toks {
			if tok.Name == name {
				rec = tok
			}
		}
		switch {
		case tt.expires == 0 && !rec.Expires.IsZero():
			t.Errorf("%q: expires %v, want never", tt.flags, rec.Expires)
		case tt.expires != 0 && (time.Until(rec.Expires)-tt.expires).Abs() > time.Minute:
			t.Errorf("%q: expires %v, want in %v", tt.flags, rec.Expires, tt.expires)
		}
		if tt.expires == 0 && !strings.Contains(stdout, "no expiry") {
			t.Errorf("%q: stdout %q lacks no expiry", tt.flags, stdout)
		}
		if !strings.Contains(stdout, " http://"+tt.example+"/\n") {
			t.Errorf("%q: stdout %q lacks the example device %s", tt.flags, stdout, tt.example)
		}
	}
}

func TestTokenCreateRefusesBadInput(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	mustRun(t, env, "", "token", "create", "--user", "alice", "--name", "laptop")
	before := countAudit(t, env, store.AuditTokenCreate)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--name", "x"}, 2, "missing --user"},
		{[]string{"--user", "alice"}, 2, "missing --name"},
		{[]string{"--user", "alice", "--name", "x", "--expires", "soon"}, 2, `bad duration "soon"`},
		{[]string{"--user", "alice", "--name", "x", "--expires", "-1h"}, 2, "want a positive duration"},
		{[]string{"--user", "alice", "--name", "x", "--expires", "99999999d"}, 2, "bad duration"},
		{[]string{"--user", "alice", "--name", "x", "--devices", "pump-["}, 2, `bad pattern "pump-["`},
		{[]string{"--user", "alice", "--name", "x", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--user", "nobody", "--name", "x"}, 1, "not found"},
		{[]string{"--user", "alice", "--name", "laptop"}, 1, "already exists"},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, env, "", append([]string{"token", "create"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.stderr) || strings.Contains(stdout, store.TokenPrefix) {
			t.Errorf("%q: code %d stdout %q stderr %q; want %d, %q", tt.args, code, stdout, stderr, tt.code, tt.stderr)
		}
		if tt.code == 2 && !strings.Contains(stderr, "usage: reflector token create --user NAME --name LABEL") {
			t.Errorf("%q: no usage in %q", tt.args, stderr)
		}
	}
	if n := countAudit(t, env, store.AuditTokenCreate); n != before {
		t.Errorf("%d token.create events after failures, want %d", n, before)
	}
}

func TestTokenListFiltersByUser(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	mustRun(t, env, "", "user", "add", "bob")
	mustRun(t, env, "", "token", "create", "--user", "alice", "--name", "laptop")
	mustRun(t, env, "", "token", "create", "--user", "bob", "--name", "ci", "--expires", "1h")

	all := mustRun(t, env, "", "token", "list")
	if !strings.Contains(all, "laptop") || !strings.Contains(all, "ci") {
		t.Errorf("token list:\n%s", all)
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f]{16} +alice +laptop +all +\S+ \S+ +never +never$`).MatchString(all) {
		t.Errorf("alice's token line:\n%s", all)
	}
	bob := mustRun(t, env, "", "token", "list", "--user", "bob")
	if strings.Contains(bob, "laptop") || !strings.Contains(bob, "ci") {
		t.Errorf("token list --user bob:\n%s", bob)
	}
}

func TestTokenRevokeStopsTheTokenAndTellsTheServer(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	mustRun(t, env, "", "user", "add", "alice")
	token := tokenRE.FindStringSubmatch(mustRun(t, env, "", "token", "create", "--user", "alice", "--name", "laptop"))[1]
	rec := lastToken(t, env.Store)
	if changed.Load() != 0 {
		t.Errorf("AccessChanged called by token create")
	}

	stdout := mustRun(t, env, "", "token", "revoke", rec.ID)
	if want := "token " + rec.ID + " (laptop of alice) revoked\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if _, err := env.Store.Authenticate(context.Background(), "alice", token); !errors.Is(err, store.ErrBadCredentials) {
		t.Errorf("revoked token: %v", err)
	}
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1", changed.Load())
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTokenRevoke, User: "alice", Token: rec.ID})

	if code, _, stderr := run(t, env, "", "token", "revoke", rec.ID); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("revoke twice: code %d stderr %q", code, stderr)
	}
	if code, _, stderr := run(t, env, "", "token", "revoke"); code != 2 || !strings.Contains(stderr, "missing argument") {
		t.Errorf("no id: code %d stderr %q", code, stderr)
	}
}
