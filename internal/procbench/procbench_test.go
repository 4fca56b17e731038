package procbench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The whole suite, briefly: our binaries, the roles and wrk as processes,
// every row of direct, the relays and both of our columns measured, and a
// table printed. frp and chisel are not in the repository's dependencies;
// they are measured by hand (docs/performance.md).
func TestSuiteRunsEveryRow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true, so .ci/run should have installed wrk (Debian's wrk)")
		}
		t.Skip("no wrk (Debian's wrk)")
	}
	dir := t.TempDir()
	build := func(pkg string) string {
		bin := filepath.Join(dir, filepath.Base(pkg))
		out, err := exec.Command("go", "build", "-o", bin, "github.com/reflector-dev/reflector/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	cfg := Config{
		Reflector: build("cmd/reflector"),
		Agent:     build("cmd/reflector-agent"),
		Self:      build("integration/procbench"),
		Wrk:       wrk,
		Duration:  300 * time.Millisecond,
		Runs:      1,
		Work:      t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"direct", "2 relays", "ours (TLS)", "ours (plain)"}
	if strings.Join(res.Systems, ",") != strings.Join(want, ",") {
		t.Errorf("systems %q, want %q", res.Systems, want)
	}
	if len(res.Tests) != len(tests) {
		t.Errorf("%d rows, want %d", len(res.Tests), len(tests))
	}
	for _, tt := range res.Tests {
		for _, s := range want {
			if xs := res.Figures[tt][s]; len(xs) != 1 || xs[0] <= 0 {
				t.Errorf("%s, %s: %v", tt, s, xs)
			}
		}
	}
	if xs := res.CPU["download, 1 stream"]["ours (TLS)/reflector"]; len(xs) != 1 || xs[0] <= 0 {
		t.Errorf("the reflector's CPU per MB: %v", xs)
	}
	// Every process the run started has gone: the reflector's command
	// line names its data directory in the work directory.
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), cfg.Work) {
			t.Errorf("still running after the run: %s", strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	var table strings.Builder
	res.WriteTable(&table)
	if !strings.Contains(table.String(), "| download, 1 stream, MB/s |") {
		t.Errorf("table:\n%s", table.String())
	}
	t.Logf("\n%s", table.String())
}

func TestNumber(t *testing.T) {
	for x, want := range map[float64]string{0: "0.0", 3.14: "3.1", 12: "12", 1234: "1,234", 1234567: "1,234,567", -240: "−240"} {
		if got := number(x); got != want {
			t.Errorf("number(%v) = %q, want %q", x, got, want)
		}
	}
}
