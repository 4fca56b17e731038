package control

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

func TestDeviceAddAndRemoveAreAudited(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	addGroups(t, env, "ops")
	mustRun(t, env, "", "device", "add", "pump-17", "--group", "ops", "--ports", "22,80")
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: "pump-17", Reason: "groups ops, ports 22,80"})
	mustRun(t, env, "", "device", "rm", "pump-17")
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceRm, Device: "pump-17"})
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1 (by rm)", changed.Load())
	}
}

func TestDeviceSetChangesOnlyWhatIsGiven(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	addGroups(t, env, "ops", "lab")
	mustRun(t, env, "", "device", "add", "pump-17", "--group", "ops", "--ports", "80", "--name", "Pump 17", "--http-port", "80")

	steps := []struct {
		args   []string
		stdout string
		check  func(d store.Device) bool
	}{
		{[]string{"--group", "lab,ops"}, "device pump-17 updated (groups lab,ops)\n",
			func(d store.Device) bool {
				return slices.Equal(d.Groups, []string{"lab", "ops"}) && d.Name == "Pump 17"
			}},
		{[]string{"--ports", "22", "--ports", "80"}, "device pump-17 updated (ports 22,80)\n",
			func(d store.Device) bool { return slices.Equal(d.Ports, []uint16{22, 80}) && len(d.Groups) == 2 }},
		{[]string{"--name", "Pump seventeen", "--http-port", "8080", "--ports", "8080"},
			`device pump-17 updated (ports 8080, name "Pump seventeen", HTTP port 8080)` + "\n",
			func(d store.Device) bool { return d.Name == "Pump seventeen" && d.HTTPPort == 8080 }},
		{[]string{"--name", "", "--http-port", "0", "--no-ports", "--no-groups"},
			"device pump-17 updated (no groups, the agent's ports, no name, the agent's HTTP port)\n",
			func(d store.Device) bool {
				return d.Name == "" && d.HTTPPort == 0 && len(d.Ports) == 0 && len(d.Groups) == 0
			}},
	}
	for i, st := range steps {
		out := mustRun(t, env, "", append([]string{"device", "set", "pump-17"}, st.args...)...)
		if out != st.stdout {
			t.Errorf("%q: stdout %q, want %q", st.args, out, st.stdout)
		}
		d, err := env.Store.Device("pump-17")
		if err != nil {
			t.Fatal(err)
		}
		if !st.check(d) {
			t.Errorf("%q: stored %+v", st.args, d)
		}
		checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceSet, Device: "pump-17", Reason: strings.TrimSuffix(strings.SplitN(st.stdout, "(", 2)[1], ")\n")})
		if int(changed.Load()) != i+1 {
			t.Errorf("%q: AccessChanged called %d times, want %d", st.args, changed.Load(), i+1)
		}
	}

	// The same note as device add when browsing would be refused.
	mustRun(t, env, "", "device", "set", "pump-17", "--ports", "22")
	if code, _, stderr := run(t, env, "", "device", "set", "pump-17", "--http-port", "80"); code != 0 || !strings.Contains(stderr, "--http-port 80 is not among --ports 22") {
		t.Errorf("http port outside ports: code %d stderr %q", code, stderr)
	}
}

func TestDeviceSetRefusesBadInput(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "ops")
	mustRun(t, env, "", "device", "add", "pump-17", "--group", "ops")
	before := countAudit(t, env, store.AuditDeviceSet)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"pump-17"}, 2, "nothing to change"},
		{[]string{"pump-17", "--group", "ops", "--no-groups"}, 2, "--group and --no-groups exclude each other"},
		{[]string{"pump-17", "--ports", "22", "--no-ports"}, 2, "--ports and --no-ports exclude each other"},
		{[]string{"pump-17", "--ports", "22,ssh"}, 2, `port "ssh" is not a number from 1 to 65535`},
		{[]string{"pump-17", "--http-port", "65536"}, 2, "want 0-65535"},
		{[]string{"pump-17", "--group", "nope"}, 1, `group "nope": not found`},
		{[]string{"nope-1", "--name", "x"}, 1, "not found"},
		{[]string{"--name", "x"}, 2, "missing argument"},
	}
	for _, tt := range tests {
		if code, _, stderr := run(t, env, "", append([]string{"device", "set"}, tt.args...)...); code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: code %d stderr %q; want %d, %q", tt.args, code, stderr, tt.code, tt.stderr)
		}
	}
	if d, _ := env.Store.Device("pump-17"); !slices.Equal(d.Groups, []string{"ops"}) {
		t.Errorf("device changed: %+v", d)
	}
	if n := countAudit(t, env, store.AuditDeviceSet); n != before {
		t.Errorf("%d device.set events after failures, want %d", n, before)
	}
}

var secretRE = regexp.MustCompile(`secret \(shown once\): (\S+)\n`)

func TestDeviceRotateSecretRefusesOldAndDropsAgent(t *testing.T) {
	env := newTestEnv(t)
	old := secretRE.FindStringSubmatch(mustRun(t, env, "", "device", "add", "pump-17", "--ports", "22,80"))[1]
	ft := newFakeTunnel()
	env.Hub.Register("pump-17", ft, tunnel.DeviceInfo{RemoteAddr: "192.0.2.7:1"})

	out := mustRun(t, env, "", "device", "rotate-secret", "pump-17")
	m := regexp.MustCompile(`^device pump-17 has a new secret \(shown once\): (\S+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout:\n%s", out)
	}
	secret := m[1]
	for _, want := range []string{
		"the old secret no longer works; the connected agent was dropped\n",
		"restart the agent on the device with:\n",
		"  REFLECTOR_DEVICE_SECRET='" + secret + "' reflector-agent --reflector https://reflector.example:8443 --device pump-17 --ports 22,80 --fingerprint " + testFingerprint + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !ft.closed.Load() {
		t.Error("agent not dropped")
	}
	if _, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", old); !errors.Is(err, store.ErrBadCredentials) {
		t.Errorf("old secret: %v", err)
	}
	if _, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Errorf("new secret: %v", err)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditRotate, Device: "pump-17"})

	// Offline, and without a hub at all.
	env.Hub = nil
	if out := mustRun(t, env, "", "device", "rotate-secret", "pump-17"); !strings.Contains(out, "the old secret no longer works\n") {
		t.Errorf("offline: %q", out)
	}
	if code, _, stderr := run(t, env, "", "device", "rotate-secret", "nope-1"); code != 1 || !strings.Contains(stderr, "not found") {
		t.Errorf("unknown device: code %d stderr %q", code, stderr)
	}
}

func TestDeviceDisableRefusesAgentUntilEnabled(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	secret := secretRE.FindStringSubmatch(mustRun(t, env, "", "device", "add", "pump-17"))[1]
	ft := newFakeTunnel()
	env.Hub.Register("pump-17", ft, tunnel.DeviceInfo{RemoteAddr: "192.0.2.7:1"})

	if out := mustRun(t, env, "", "device", "disable", "pump-17"); out != "device pump-17 disabled; its tunnel was closed\n" {
		t.Errorf("disable: %q", out)
	}
	if !ft.closed.Load() {
		t.Error("tunnel still open")
	}
	if _, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", secret); !errors.Is(err, store.ErrDisabled) {
		t.Errorf("disabled device's secret: %v", err)
	}
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times, want 1", changed.Load())
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDisable, Device: "pump-17"})
	// Listed as disabled even while the hub still has it (a reconnect
	// racing the disable is refused at the endpoint).
	env.Hub.Register("pump-17", newFakeTunnel(), tunnel.DeviceInfo{RemoteAddr: "192.0.2.7:2"})
	if out := mustRun(t, env, "", "device", "list"); !regexp.MustCompile(`(?m)^pump-17 .* disabled$`).MatchString(out) {
		t.Errorf("device list:\n%s", out)
	}

	if out := mustRun(t, env, "", "device", "enable", "pump-17"); out != "device pump-17 enabled\n" {
		t.Errorf("enable: %q", out)
	}
	if _, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Errorf("enabled device's secret: %v", err)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditEnable, Device: "pump-17"})
	if changed.Load() != 1 {
		t.Errorf("AccessChanged called %d times after enable, want still 1", changed.Load())
	}
	for _, cmd := range []string{"disable", "enable"} {
		if code, _, stderr := run(t, env, "", "device", cmd, "nope-1"); code != 1 || !strings.Contains(stderr, "not found") {
			t.Errorf("%s unknown: code %d stderr %q", cmd, code, stderr)
		}
	}
}

func TestDeviceHTTPTLSFlags(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "device", "add", "pump-17", "--http-port", "443", "--http-tls")
	if d, _ := env.Store.Device("pump-17"); !d.HTTPTLS || d.HTTPPort != 443 {
		t.Fatalf("after add --http-tls: %+v", d)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: "pump-17",
		Reason: "no groups, the agent's ports, HTTPS to the web port"})

	steps := []struct {
		args   []string
		stdout string
		tls    bool
	}{
		{[]string{"--no-http-tls"}, "device pump-17 updated (plain HTTP to the web port)\n", false},
		{[]string{"--http-tls"}, "device pump-17 updated (HTTPS to the web port)\n", true},
		{[]string{"--http-port", "0", "--http-tls=false"}, "device pump-17 updated (the agent's HTTP port, HTTPS as the agent declares)\n", false},
	}
	for _, st := range steps {
		out := mustRun(t, env, "", append([]string{"device", "set", "pump-17"}, st.args...)...)
		if out != st.stdout {
			t.Errorf("%q: stdout %q, want %q", st.args, out, st.stdout)
		}
		if d, _ := env.Store.Device("pump-17"); d.HTTPTLS != st.tls {
			t.Errorf("%q: HTTPTLS %v, want %v", st.args, d.HTTPTLS, st.tls)
		}
		checkAudit(t, env, store.AuditEvent{Kind: store.AuditDeviceSet, Device: "pump-17",
			Reason: strings.TrimSuffix(strings.SplitN(st.stdout, "(", 2)[1], ")\n")})
	}
	if code, _, stderr := run(t, env, "", "device", "set", "pump-17", "--http-tls", "--no-http-tls"); code != 2 ||
		!strings.Contains(stderr, "--http-tls and --no-http-tls exclude each other") {
		t.Errorf("both flags: code %d stderr %q", code, stderr)
	}
}

// device reset-host-key forgets the kept key, says when there was none,
// and is audited.
func TestDeviceResetHostKey(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "device", "add", "pump-17")
	if _, _, err := env.Store.SetHostKey("pump-17", []byte("key")); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, env, "", "device", "reset-host-key", "pump-17"); !strings.Contains(out, "forgotten") {
		t.Errorf("reset: %q", out)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditHostKey, Device: "pump-17", Reason: "reset"})
	if _, err := env.Store.HostKey("pump-17"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("host key after reset: %v", err)
	}
	if out := mustRun(t, env, "", "device", "reset-host-key", "pump-17"); !strings.Contains(out, "no SSH host key was kept") {
		t.Errorf("second reset: %q", out)
	}
	if code, _, _ := run(t, env, "", "device", "reset-host-key", "pump-99"); code == 0 {
		t.Error("reset of an unknown device succeeded")
	}
}
