package control

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

const testFingerprint = "sha256:" + "ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01"

// testEnv is what a test wires commands to, as the server does: a store,
// a hub and what the operations need besides. A test may change a field
// between commands; each command runs with an ops.Service made of them.
type testEnv struct {
	Store         *store.Store
	Hub           *tunnel.Hub
	ReflectorURL  string
	Fingerprint   string
	AccessChanged func()
}

// env is the Env a command runs with. Without a store it is the zero Env,
// the wiring mistake Run reports.
func (e testEnv) env(t testing.TB) Env {
	t.Helper()
	if e.Store == nil {
		return Env{}
	}
	svc, err := ops.New(ops.Config{Store: e.Store, Hub: e.Hub, ReflectorURL: e.ReflectorURL,
		Fingerprint: e.Fingerprint, AccessChanged: e.AccessChanged})
	if err != nil {
		t.Fatalf("ops: %v", err)
	}
	return Env{Ops: svc}
}

// newTestEnv opens a store in a fresh directory, with an empty hub.
func newTestEnv(t *testing.T) testEnv {
	t.Helper()
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return testEnv{
		Store:        s,
		Hub:          tunnel.NewHub(nil),
		ReflectorURL: "https://reflector.example:8443",
		Fingerprint:  testFingerprint,
	}
}

// countAccessChanged makes env count its AccessChanged calls.
func countAccessChanged(env *testEnv) *atomic.Int32 {
	var n atomic.Int32
	env.AccessChanged = func() { n.Add(1) }
	return &n
}

// mustRun runs a command that must succeed and returns its stdout.
func mustRun(t *testing.T, env testEnv, stdin string, args ...string) string {
	t.Helper()
	code, stdout, stderr := run(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("%s: code %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// addGroups creates groups in env's store.
func addGroups(t *testing.T, env testEnv, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := env.Store.AddGroup(store.Group{Name: name}); err != nil {
			t.Fatalf("add group %s: %v", name, err)
		}
	}
}

// lastAudit returns the newest audit event of kind, failing the test if
// there is none.
func lastAudit(t *testing.T, env testEnv, kind string) store.AuditEvent {
	t.Helper()
	events, err := env.Store.AuditEvents(store.AuditFilter{Kind: kind})
	if err != nil {
		t.Fatalf("AuditEvents: %v", err)
	}
	if len(events) == 0 {
		t.Fatalf("no %s event in the audit log", kind)
	}
	return events[len(events)-1]
}

// checkAudit checks the newest event of want.Kind: an admin change that
// succeeded, by "local", with want's User, Device, Group and Token, and a
// Reason containing want.Reason.
func checkAudit(t *testing.T, env testEnv, want store.AuditEvent) {
	t.Helper()
	e := lastAudit(t, env, want.Kind)
	if !e.OK || e.Actor != "local" || e.User != want.User || e.Device != want.Device ||
		e.Group != want.Group || e.Token != want.Token || !strings.Contains(e.Reason, want.Reason) {
		t.Errorf("audit event %+v, want %+v (ok, by local)", e, want)
	}
	if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
		t.Errorf("audit event time %v", e.Time)
	}
}

// countAudit returns how many events of kind the log holds.
func countAudit(t *testing.T, env testEnv, kind string) int {
	t.Helper()
	events, err := env.Store.AuditEvents(store.AuditFilter{Kind: kind})
	if err != nil {
		t.Fatalf("AuditEvents: %v", err)
	}
	return len(events)
}

// run runs one command and returns its exit code and output.
func run(t *testing.T, env testEnv, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), env.env(t), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestCommands runs a session of commands against one store, each step
// depending on the ones before it.
func TestCommands(t *testing.T) {
	env := newTestEnv(t)
	steps := []struct {
		args       []string
		stdin      string
		code       int
		stdout     []string // substrings
		stderr     []string // substrings
		notStdout  []string
		stderrOnly bool // stdout must be empty
	}{
		{args: []string{"group", "add", "ops"}, code: 0, stdout: []string{"group ops added (no device limit)"}},
		{args: []string{"group", "add", "lab", "--max-devices", "3"}, code: 0, stdout: []string{"group lab added (at most 3 devices)"}},
		{args: []string{"group", "add", "field"}, code: 0},
		{args: []string{"user", "add", "alice", "--admin"}, code: 0,
			stdout: []string{"user alice added (admin)", "password for alice: ", "(shown once)"}},
		{args: []string{"user", "add", "-group", "ops", "bob", "--group", "lab,field", "--password-stdin"}, stdin: "s3cret\r\nignored\n", code: 0,
			stdout: []string{"user bob added (user, groups ops,lab,field)"}, notStdout: []string{"password for"}},
		{args: []string{"user", "add", "alice"}, code: 1, stderrOnly: true,
			stderr: []string{"reflector: add user \"alice\": already exists"}},
		{args: []string{"user", "add", "Alice"}, code: 1, stderr: []string{"already exists"}},
		{args: []string{"user", "add", "carol", "--password-stdin"}, stdin: "\n", code: 1,
			stderr: []string{"reflector: add user carol: empty password on stdin"}},
		{args: []string{"user", "add", "carol", "--password-stdin"}, stdin: "", code: 1,
			stderr: []string{"empty password on stdin"}},
		{args: []string{"user", "add", "bad name!"}, code: 1, stderr: []string{"invalid"}},
		{args: []string{"user", "add"}, code: 2, stderr: []string{"missing argument", "usage: reflector user add NAME"}},
		{args: []string{"user", "add", "a", "b"}, code: 2, stderr: []string{`unexpected argument "b"`}},
		{args: []string{"user", "add", "dave", "--bogus"}, code: 2, stderr: []string{"flag provided but not defined: -bogus"}},
		{args: []string{"user", "list"}, code: 0,
			stdout: []string{"NAME", "ROLE", "GROUPS", "TOTP", "CREATED", "alice", "admin", "bob", "field,lab,ops", time.Now().Format("2006-01-02")}},
		{args: []string{"user", "set", "bob", "--role", "admin"}, code: 0, stdout: []string{"user bob updated (role admin)"}},
		{args: []string{"user", "set", "bob", "--role", "root"}, code: 2, stderr: []string{`unknown role "root": want admin or user`}},
		{args: []string{"user", "set", "bob"}, code: 2, stderr: []string{"nothing to change", "usage: reflector user set NAME"}},
		{args: []string{"user", "passwd", "bob"}, code: 0, stdout: []string{"password for bob changed", "(shown once)"}},
		{args: []string{"group", "list"}, code: 0, stdout: []string{"NAME", "MAX DEVICES", "USERS", "DEVICES", "lab    3", "ops    -            1      0"}},
		{args: []string{"user", "rm", "bob"}, code: 0, stdout: []string{"user bob removed"}},
		{args: []string{"user", "rm", "bob"}, code: 1, stderr: []string{"reflector: remove user \"bob\": not found"}},
		{args: []string{"user", "list"}, code: 0, notStdout: []string{"bob"}},

		{args: []string{"device", "add", "pump-17", "--group", "ops", "--ports", "80,22", "--name", "Pump 17"}, code: 0,
			stdout: []string{
				"device pump-17 added; its secret (shown once): ",
				"run the agent on the device with:",
				"REFLECTOR_DEVICE_SECRET='",
				"reflector-agent --reflector https://reflector.example:8443 --device pump-17 --ports 80,22 --fingerprint " + testFingerprint,
				"allow-list",
			}},
		{args: []string{"device", "add", "pump-17"}, code: 1, stderr: []string{"reflector: add device \"pump-17\": already exists"}},
		{args: []string{"device", "add", "gw-1", "--http-port", "8080"}, code: 0,
			stdout: []string{"--device gw-1 --ports 8080 "}},
		{args: []string{"device", "add", "gw-2", "--http-port", "8080", "--ports", "22"}, code: 0,
			stderr: []string{"--http-port 8080 is not among --ports 22"}},
		{args: []string{"device", "add", "plc"}, code: 0, stdout: []string{"--device plc --ports 80 "}},
		{args: []string{"device", "add", "Bad_ID"}, code: 1, stderr: []string{"invalid"}},
		{args: []string{"device", "add", "x", "--group", "nope"}, code: 1, stderr: []string{`group "nope": not found`, "groups must exist first: reflector group add NAME"}},
		{args: []string{"user", "add", "x", "--group", "nope"}, code: 1, stderr: []string{`group "nope": not found`, "reflector group add NAME"}},
		{args: []string{"device", "add", "x", "--ports", "80,nope"}, code: 2, stderr: []string{`port "nope" is not a number from 1 to 65535`}},
		{args: []string{"device", "add", "x", "--http-port", "70000"}, code: 2, stderr: []string{"want 1-65535"}},
		{args: []string{"device", "list"}, code: 0,
			stdout: []string{"ID", "NAME", "GROUPS", "PORTS", "STATUS", "pump-17", "Pump 17", "22,80", "offline", "gw-1", "agent's"}},
		{args: []string{"device", "rm", "pump-17"}, code: 0, stdout: []string{"device pump-17 removed"}, notStdout: []string{"tunnel"}},
		{args: []string{"device", "rm", "pump-17"}, code: 1, stderr: []string{"not found"}},
		{args: []string{"device", "disable", "plc"}, code: 0, stdout: []string{"device plc disabled"}},
		{args: []string{"device", "list"}, code: 0, stdout: []string{"agent's  disabled\n"}},
		{args: []string{"device", "enable", "plc"}, code: 0, stdout: []string{"device plc enabled"}},
		{args: []string{"token", "create", "--user", "alice", "--name", "laptop"}, code: 0, stdout: []string{"token laptop for alice created", "rfl_"}},
		{args: []string{"token", "list"}, code: 0, stdout: []string{"ID", "LAST USED", "alice", "laptop", "never"}},
		{args: []string{"enroll", "create", "--group", "ops"}, code: 0, stdout: []string{"enrolment key for group ops created", "rfe_"}},
		{args: []string{"enroll", "list"}, code: 0, stdout: []string{"ops", "0"}},
		{args: []string{"audit", "--kind", "user"}, code: 0, stdout: []string{"user.add", "user.set", "bob"}, notStdout: []string{"device.add"}},

		{args: []string{"help"}, code: 2, stderr: []string{"usage: reflector", "user add NAME", "device list",
			"user totp enable NAME", "token create --user NAME", "group add NAME", "device rotate-secret ID",
			"enroll create --group G", "audit [--since"}},
		{args: nil, code: 2, stderr: []string{"usage: reflector"}},
		{args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`, "usage: reflector"}},
		{args: []string{"user", "frob"}, code: 2, stderr: []string{`unknown command "user frob"`}},
		{args: []string{"device"}, code: 2, stderr: []string{"device: missing subcommand"}},
		{args: []string{"group"}, code: 2, stderr: []string{"group: missing subcommand", "group add NAME"}},
		{args: []string{"user", "totp"}, code: 2, stderr: []string{"user totp: missing subcommand", "user totp disable"}},
		{args: []string{"token", "--help"}, code: 2, stderr: []string{"token: missing subcommand", "token revoke ID"}},
		{args: []string{"user", "totp", "frob"}, code: 2, stderr: []string{`unknown command "user totp frob"`}},
		{args: []string{"enroll"}, code: 2, stderr: []string{"enroll: missing subcommand"}},
		{args: []string{"user", "list", "-h"}, code: 0, stderr: []string{"usage: reflector user list"}},
	}
	for _, st := range steps {
		code, stdout, stderr := run(t, env, st.stdin, st.args...)
		name := strings.Join(st.args, " ")
		if code != st.code {
			t.Errorf("%s: code %d, want %d\nstdout: %s\nstderr: %s", name, code, st.code, stdout, stderr)
		}
		for _, s := range st.stdout {
			if !strings.Contains(stdout, s) {
				t.Errorf("%s: stdout lacks %q:\n%s", name, s, stdout)
			}
		}
		for _, s := range st.notStdout {
			if strings.Contains(stdout, s) {
				t.Errorf("%s: stdout has %q:\n%s", name, s, stdout)
			}
		}
		for _, s := range st.stderr {
			if !strings.Contains(stderr, s) {
				t.Errorf("%s: stderr lacks %q:\n%s", name, s, stderr)
			}
		}
		if st.stderrOnly && stdout != "" {
			t.Errorf("%s: stdout %q, want none", name, stdout)
		}
	}
}

func TestUserAddGeneratedPasswordIsShownOnceAndWorks(t *testing.T) {
	env := newTestEnv(t)
	code, stdout, _ := run(t, env, "", "user", "add", "alice")
	if code != 0 {
		t.Fatalf("code %d", code)
	}
	m := regexp.MustCompile(`password for alice: ([A-Za-z0-9_-]+) \(shown once\)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no password in %q", stdout)
	}
	if len(m[1]) != 22 { // 16 bytes of base64url without padding
		t.Errorf("password %q: %d characters, want 22", m[1], len(m[1]))
	}
	u, err := env.Store.CheckPassword(context.Background(), "alice", m[1])
	if err != nil {
		t.Fatalf("CheckPassword: %v", err)
	}
	if u.Role != store.RoleUser {
		t.Errorf("role %q, want user", u.Role)
	}
	if _, stdout, _ := run(t, env, "", "user", "list"); strings.Contains(stdout, m[1]) {
		t.Errorf("user list shows the password")
	}
}

func TestUserAddPasswordStdinTakesFirstLineWithoutLineEnding(t *testing.T) {
	env := newTestEnv(t)
	if code, _, stderr := run(t, env, "correct horse\r\nsecond line\n", "user", "add", "--password-stdin", "bob", "--admin"); code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	u, err := env.Store.CheckPassword(context.Background(), "bob", "correct horse")
	if err != nil {
		t.Fatalf("CheckPassword: %v", err)
	}
	if u.Role != store.RoleAdmin {
		t.Errorf("role %q, want admin", u.Role)
	}
}

func TestUserAddGroupsRepeatedAndCommaSeparated(t *testing.T) {
	env := newTestEnv(t)
	addGroups(t, env, "a", "b", "c")
	if code, _, stderr := run(t, env, "", "user", "add", "carol", "--group", "b, a", "-group=c", "--group", "a"); code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	u, err := env.Store.User("carol")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(u.Groups, want) {
		t.Errorf("groups %q, want %q", u.Groups, want)
	}
}

func TestDeviceAddSecretChecksAndRecordIsStored(t *testing.T) {
	env := newTestEnv(t)
	env.Fingerprint = ""
	addGroups(t, env, "ops")
	code, stdout, stderr := run(t, env, "", "device", "add", "pump-17", "--name", "Pump 17", "--ports", "80", "--ports", "22", "--http-port", "80", "--group", "ops")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	m := regexp.MustCompile(`its secret \(shown once\): (\S+)\n`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no secret in %q", stdout)
	}
	if !strings.Contains(stdout, "REFLECTOR_DEVICE_SECRET='"+m[1]+"' reflector-agent") {
		t.Errorf("agent command line lacks the secret:\n%s", stdout)
	}
	if strings.Contains(stdout, "--fingerprint") {
		t.Errorf("--fingerprint shown although unknown:\n%s", stdout)
	}
	d, err := env.Store.CheckDeviceSecret(context.Background(), "pump-17", m[1])
	if err != nil {
		t.Fatalf("CheckDeviceSecret: %v", err)
	}
	if d.Name != "Pump 17" || d.HTTPPort != 80 || !slices.Equal(d.Ports, []uint16{22, 80}) || !slices.Equal(d.Groups, []string{"ops"}) {
		t.Errorf("stored %+v", d)
	}
}

// fakeTunnel is a connected device for the hub; it only records Close.
type fakeTunnel struct {
	closed atomic.Bool
	done   chan struct{}
}

func newFakeTunnel() *fakeTunnel { return &fakeTunnel{done: make(chan struct{})} }

func (f *fakeTunnel) Open(context.Context, uint16, string) (net.Conn, error) {
	return nil, tunnel.ErrDeviceOffline
}

func (f *fakeTunnel) Close() error {
	if f.closed.CompareAndSwap(false, true) {
		close(f.done)
	}
	return nil
}

func (f *fakeTunnel) Done() <-chan struct{} { return f.done }

func TestDeviceListShowsHubStatusAndLastSeen(t *testing.T) {
	env := newTestEnv(t)
	for _, id := range []string{"online-1", "seen-1", "never-1"} {
		if _, err := env.Store.AddDevice(store.Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	env.Hub.Register("online-1", newFakeTunnel(), tunnel.DeviceInfo{Kind: webtunnel.Kind, RemoteAddr: "192.0.2.7:50123", Ports: []uint16{22, 80}})
	seen := time.Date(2025, 3, 4, 5, 6, 0, 0, time.Local)
	env.Store.TouchDevice("seen-1", seen)

	code, stdout, stderr := run(t, env, "", "device", "list")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	lines := strings.Split(stdout, "\n")
	want := map[string]*regexp.Regexp{
		"online-1": regexp.MustCompile(`online since \d\d:\d\d:\d\d from 192\.0\.2\.7:50123 \(webtunnel\), agent ports 22,80$`),
		"seen-1":   regexp.MustCompile(`offline, last seen 2025-03-04 05:06$`),
		"never-1":  regexp.MustCompile(`  offline$`),
	}
	for id, re := range want {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, id+" ") })
		if i < 0 {
			t.Errorf("no line for %s:\n%s", id, stdout)
			continue
		}
		if !re.MatchString(lines[i]) {
			t.Errorf("line %q does not match %v", lines[i], re)
		}
	}

	// Without a hub (no server runs) every device is offline.
	env.Hub = nil
	_, stdout, _ = run(t, env, "", "device", "list")
	if strings.Contains(stdout, "online since") {
		t.Errorf("online without a hub:\n%s", stdout)
	}
}

func TestDeviceRemoveClosesItsTunnel(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.Store.AddDevice(store.Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	ft := newFakeTunnel()
	env.Hub.Register("pump-17", ft, tunnel.DeviceInfo{RemoteAddr: "192.0.2.7:1"})
	code, stdout, stderr := run(t, env, "", "device", "rm", "pump-17")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	if !ft.closed.Load() {
		t.Error("tunnel still open after device rm")
	}
	if !strings.Contains(stdout, "device pump-17 removed; its tunnel was closed") {
		t.Errorf("stdout %q", stdout)
	}
	if _, err := env.Store.Device("pump-17"); err == nil {
		t.Error("device still stored")
	}
}

func TestRunWithoutStoreFailsInsteadOfPanicking(t *testing.T) {
	code, _, stderr := run(t, testEnv{}, "", "user", "list")
	if code != 1 || !strings.Contains(stderr, "no store") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args  []string
		pos   []string
		admin bool
		group string
	}{
		{[]string{"alice"}, []string{"alice"}, false, ""},
		{[]string{"alice", "--admin"}, []string{"alice"}, true, ""},
		{[]string{"--admin", "alice"}, []string{"alice"}, true, ""},
		{[]string{"-group", "g", "alice", "-admin"}, []string{"alice"}, true, "g"},
		{[]string{"alice", "--group=g", "bob"}, []string{"alice", "bob"}, false, "g"},
		{[]string{"--", "--admin"}, []string{"--admin"}, false, ""},
		{[]string{"alice", "--", "-x", "--admin"}, []string{"alice", "-x", "--admin"}, false, ""},
		{nil, nil, false, ""},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		admin := fs.Bool("admin", false, "")
		group := fs.String("group", "", "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if !slices.Equal(pos, tt.pos) || *admin != tt.admin || *group != tt.group {
			t.Errorf("%q: pos %q admin %v group %q; want %q %v %q", tt.args, pos, *admin, *group, tt.pos, tt.admin, tt.group)
		}
	}
}

func TestWantsPasswordStdin(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"alice"}, false},
		{[]string{"alice", "--password-stdin"}, true},
		{[]string{"-password-stdin", "alice"}, true},
		{[]string{"alice", "--password-stdin=true"}, true},
		{[]string{"alice", "--password-stdin=false"}, false},
		{[]string{"alice", "--password-stdin", "--password-stdin=0"}, false},
		{[]string{"--", "--password-stdin"}, false},
		{[]string{"password-stdin"}, false},
		{[]string{"---password-stdin"}, false},
	}
	for _, tt := range tests {
		if got := wantsPasswordStdin(tt.args); got != tt.want {
			t.Errorf("wantsPasswordStdin(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"pw\n", "pw", false},
		{"pw\r\nmore", "pw", false},
		{"pw", "pw", false},
		{"", "", false},
		{" pw \n", " pw ", false},
		{strings.Repeat("x", 10), "", true},
		{strings.Repeat("x", 9) + "\n", "", true},
		{strings.Repeat("x", 8) + "\n", strings.Repeat("x", 8), false},
	}
	for _, tt := range tests {
		got, err := readLine(strings.NewReader(tt.in), 9)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("readLine(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestDeviceShowHasTheTunnelsStatus: device show prints the record and,
// while connected, what the tunnel reports, as text and as JSON.
func TestDeviceShowHasTheTunnelsStatus(t *testing.T) {
	env := newTestEnv(t)
	if _, err := env.Store.AddDevice(store.Device{ID: "pump-17", Name: "Pump 17", Groups: nil}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, env, "", "device", "show", "pump-17")
	if code != 0 || !regexp.MustCompile(`(?m)^status\s+offline$`).MatchString(stdout) || strings.Contains(stdout, "kind") {
		t.Fatalf("offline: code %d\n%s%s", code, stdout, stderr)
	}
	env.Hub.Register("pump-17", newFakeTunnel(), tunnel.DeviceInfo{Kind: webtunnel.Kind, RemoteAddr: "192.0.2.7:50123",
		AgentVersion: "WebTunnelAgent/2.5.0", Ports: []uint16{22, 80}, Properties: map[string]string{"httpPort": "80", "deviceName": "Pump\t17"}})
	code, stdout, stderr = run(t, env, "", "device", "show", "pump-17")
	for _, re := range []string{`(?m)^kind\s+webtunnel$`, `(?m)^agent\s+WebTunnelAgent/2\.5\.0$`,
		`(?m)^property httpPort\s+80$`, `(?m)^property deviceName\s+Pump 17$`, `(?m)^streams\s+0 open; 0 B from the device, 0 B to it`,
		`(?m)^status\s+online since .* \(webtunnel\), agent ports 22,80$`} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("no %s in:\n%s%s", re, stdout, stderr)
		}
	}
	code, stdout, _ = run(t, env, "", "device", "show", "pump-17", "--json")
	var v struct {
		ID     string
		Online bool
		Tunnel struct {
			Kind       string
			Ports      []uint16
			Properties map[string]string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || code != 0 {
		t.Fatalf("json: %v %d\n%s", err, code, stdout)
	}
	if !v.Online || v.Tunnel.Kind != webtunnel.Kind || fmt.Sprint(v.Tunnel.Ports) != "[22 80]" || v.Tunnel.Properties["httpPort"] != "80" {
		t.Errorf("json %+v", v)
	}
	if code, _, stderr = run(t, env, "", "device", "show", "nope"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Errorf("unknown device: %d %s", code, stderr)
	}
}

// TestImportMayRunLongerOnTheServer: an import hashes every password with
// argon2id, so it gets more than the control socket's usual 30 s.
func TestImportMayRunLongerOnTheServer(t *testing.T) {
	if got := runTimeout([]string{"device", "import", "fleet.csv"}); got != 15*time.Minute {
		t.Errorf("device import: %v", got)
	}
	for _, args := range [][]string{{"device", "list"}, {"nonsense"}, nil} {
		if got := runTimeout(args); got != connTimeout {
			t.Errorf("%q: %v", args, got)
		}
	}
}
