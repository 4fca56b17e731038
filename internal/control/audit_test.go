package control

import (
	"bufio"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// seedAudit writes events at fixed offsets before now, oldest first.
func seedAudit(t *testing.T, env testEnv, now time.Time) {
	t.Helper()
	events := []store.AuditEvent{
		{Time: now.Add(-72 * time.Hour), Kind: store.AuditLogin, OK: false, User: "alice", Client: "192.0.2.9:4000", Reason: "wrong password"},
		{Time: now.Add(-3 * time.Hour), Kind: store.AuditDeviceAdd, OK: true, Actor: "local", Device: "pump-1", Reason: "groups ops"},
		{Time: now.Add(-30 * time.Minute), Kind: store.AuditStream, OK: true, User: "alice", Device: "pump-1", Port: 22,
			Client: "192.0.2.7:5000", Token: "0123456789abcdef", BytesUp: 1500, BytesDown: 2_000_000, Duration: 12*time.Second + 300*time.Millisecond},
		{Time: now.Add(-10 * time.Minute), Kind: store.AuditRotate, OK: true, Actor: "local", Device: "pump-1"},
		{Time: now.Add(-time.Minute), Kind: store.AuditLogin, OK: true, User: "bob", Client: "192.0.2.8:6000"},
	}
	for _, e := range events {
		env.Store.Audit(e)
	}
}

// auditLines returns the table's data lines.
func auditLines(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !regexp.MustCompile(`^TIME +KIND +OK +USER +DEVICE +PORT +CLIENT +DETAIL$`).MatchString(lines[0]) {
		t.Fatalf("header %q", lines[0])
	}
	return lines[1:]
}

func TestAuditTable(t *testing.T) {
	env := newTestEnv(t)
	now := time.Now()
	seedAudit(t, env, now)
	lines := auditLines(t, mustRun(t, env, "", "audit"))
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	wants := []string{
		`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +login +NO +alice +- +- +192\.0\.2\.9:4000 +wrong password$`,
		`^\S+ \S+ +device\.add +yes +- +pump-1 +- +- +by local; groups ops$`,
		`^\S+ \S+ +stream +yes +alice +pump-1 +22 +192\.0\.2\.7:5000 +token 0123456789abcdef; 1\.5 kB up, 2\.0 MB down in 12s$`,
		`^\S+ \S+ +device\.rotate +yes +- +pump-1 +- +- +by local$`,
		`^\S+ \S+ +login +yes +bob +- +- +192\.0\.2\.8:6000 +-$`,
	}
	for i, want := range wants {
		if !regexp.MustCompile(want).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], want)
		}
	}
	if !strings.HasPrefix(lines[4], now.Add(-time.Minute).Local().Format("2006-01-02 15:04:05")) {
		t.Errorf("time of %q: want local time", lines[4])
	}
}

func TestAuditFilters(t *testing.T) {
	env := newTestEnv(t)
	now := time.Now()
	seedAudit(t, env, now)
	tests := []struct {
		args  []string
		kinds []string // of the lines, in order
	}{
		{[]string{"--user", "alice"}, []string{"login", "stream"}},
		{[]string{"--device", "pump-1"}, []string{"device.add", "stream", "device.rotate"}},
		{[]string{"--kind", "login"}, []string{"login", "login"}},
		{[]string{"--kind", "device"}, []string{"device.add", "device.rotate"}},
		{[]string{"--kind", "device."}, []string{"device.add", "device.rotate"}},
		{[]string{"--since", "1h"}, []string{"stream", "device.rotate", "login"}},
		{[]string{"--since", "1d"}, []string{"device.add", "stream", "device.rotate", "login"}},
		{[]string{"--since", now.Add(-15 * time.Minute).UTC().Format(time.RFC3339)}, []string{"device.rotate", "login"}},
		{[]string{"--since", "1h", "--user", "alice"}, []string{"stream"}},
		{[]string{"--limit", "2"}, []string{"device.rotate", "login"}},
		{[]string{"--limit", "0"}, []string{"login", "device.add", "stream", "device.rotate", "login"}},
		{[]string{"--user", "nobody"}, nil},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, env, "", append([]string{"audit"}, tt.args...)...)
		if code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, code, stderr)
			continue
		}
		var kinds []string
		for _, l := range auditLines(t, stdout) {
			kinds = append(kinds, strings.Fields(l)[2])
		}
		if strings.Join(kinds, " ") != strings.Join(tt.kinds, " ") {
			t.Errorf("%q: kinds %q, want %q", tt.args, kinds, tt.kinds)
		}
		if more := strings.Contains(stderr, "only the newest 2 events are shown"); more != (tt.args[0] == "--limit" && tt.args[1] == "2") {
			t.Errorf("%q: stderr %q", tt.args, stderr)
		}
	}
}

func TestAuditJSONLines(t *testing.T) {
	env := newTestEnv(t)
	now := time.Now()
	seedAudit(t, env, now)
	out := mustRun(t, env, "", "audit", "--json", "--kind", "stream")
	sc := bufio.NewScanner(strings.NewReader(out))
	var events []store.AuditEvent
	for sc.Scan() {
		var e store.AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	if len(events) != 1 {
		t.Fatalf("%d events:\n%s", len(events), out)
	}
	e := events[0]
	if e.Kind != store.AuditStream || !e.OK || e.User != "alice" || e.Device != "pump-1" || e.Port != 22 ||
		e.Token != "0123456789abcdef" || e.BytesUp != 1500 || e.BytesDown != 2_000_000 ||
		e.Duration != 12*time.Second+300*time.Millisecond || !e.Time.Equal(now.Add(-30*time.Minute)) || e.Seq == 0 {
		t.Errorf("event %+v", e)
	}
	if !strings.Contains(out, `"kind":"stream"`) || strings.Contains(out, `"group"`) {
		t.Errorf("JSON %s", out)
	}
}

func TestAuditRefusesBadInput(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"--since", "yesterday"}, `bad time "yesterday"`},
		{[]string{"--since", "-1h"}, "bad time"},
		{[]string{"--since", "2025-13-01T00:00:00Z"}, "bad time"},
		{[]string{"--kind", "bogus"}, `unknown kind "bogus"; kinds are login, auth.locked,`},
		{[]string{"--limit", "-1"}, "--limit -1: want 0 (all) or more"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, env, "", append([]string{"audit"}, tt.args...)...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.stderr) || !strings.Contains(stderr, "usage: reflector audit") {
			t.Errorf("%q: code %d stdout %q stderr %q; want 2, %q", tt.args, code, stdout, stderr, tt.stderr)
		}
	}
}

func TestParseDays(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90d", 90 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"0d", 0, false},
		{"720h", 720 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"-1h", -time.Hour, false}, // callers refuse negatives with their own words
		{"d", 0, true},
		{"1.5d", 0, true},
		{"-1d", 0, true},
		{"1dx", 0, true},
		{"1d-1h", 0, true},
		{"106752d", 0, true}, // past time.Duration
		{"", 0, true},
		{"never", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestLifetimeAndSinceFlags(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	lifetimes := map[string]time.Time{
		"never": {},
		"0":     {},
		"24h":   now.Add(24 * time.Hour),
		"7d":    now.Add(7 * 24 * time.Hour),
	}
	for in, want := range lifetimes {
		var l lifetimeFlag
		if err := l.Set(in); err != nil || !l.expires(now).Equal(want) {
			t.Errorf("lifetime %q: %v, %v; want %v", in, l.expires(now), err, want)
		}
	}
	for _, bad := range []string{"0s", "-1h", "soon", "0d"} {
		var l lifetimeFlag
		if err := l.Set(bad); err == nil {
			t.Errorf("lifetime %q accepted", bad)
		}
	}
	for d, want := range map[time.Duration]string{0: "never", 24 * time.Hour: "24h", 7 * 24 * time.Hour: "7d", 90 * time.Minute: "1h30m0s"} {
		if s := (&lifetimeFlag{d: d}).String(); s != want {
			t.Errorf("String of %v: %q, want %q", d, s, want)
		}
	}

	since := map[string]time.Time{
		"1h":                        now.Add(-time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2025-01-02T03:04:05Z":      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		"2025-01-02T03:04:05+01:00": time.Date(2025, 1, 2, 2, 4, 5, 0, time.UTC),
	}
	for in, want := range since {
		var f sinceFlag
		if err := f.Set(in); err != nil || !f.time(now).Equal(want) {
			t.Errorf("since %q: %v, %v; want %v", in, f.time(now), err, want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := map[int64]string{
		0:             "0 B",
		999:           "999 B",
		1000:          "1.0 kB",
		1500:          "1.5 kB",
		2_000_000:     "2.0 MB",
		3_400_000_000: "3.4 GB",
		1 << 62:       "4.6 EB",
	}
	for in, want := range tests {
		if got := byteSize(in); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", in, got, want)
		}
	}
}
