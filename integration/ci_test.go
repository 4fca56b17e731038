package integration

import (
	"os"
	"os/exec"
	"testing"
)

// skipUnlessCI skips a test that cannot run on this machine: a tool is
// missing or cannot run, /etc/hosts cannot be changed, a port cannot be
// bound. Under CI=true it fails the test instead: .ci/run installs every
// tool the tests use and runs them as root, so there the same condition is
// a broken environment, and a skip would hide that nothing was tested.
// Skips chosen by the test mode (testing.Short) do not go through it.
func skipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so .ci/run should have made this possible: "+format, args...)
	}
	t.Skipf(format, args...)
}

// requireCommand returns the path of a command the test runs, or skips the
// test (skipUnlessCI) when it is not installed; pkg is the Debian package
// that has it, which .ci/run installs.
func requireCommand(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipUnlessCI(t, "%s not installed (Debian: apt-get install --no-install-recommends %s): %v", name, pkg, err)
	}
	return p
}
