package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestRemoteLinksNoServer checks that the laptop client links none of the
// server (issue 20): none of the reflector's packages but client.
func TestRemoteLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/reflector-dev/reflector/"
	for _, pkg := range strings.Fields(string(out)) {
		own, ok := strings.CutPrefix(pkg, module)
		if ok && own != "client" && own != "cmd/remote" {
			t.Errorf("cmd/remote links %s", pkg)
		}
		for _, server := range []string{"go.etcd.io/bbolt", "github.com/xtaci/smux", "github.com/elazarl/goproxy"} {
			if pkg == server {
				t.Errorf("cmd/remote links %s", pkg)
			}
		}
	}
}

func TestSplitOursLeavesTheToolsOptions(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		login      bool
		ours, rest []string
	}{
		{[]string{"-l", "pi", "pump-17", "-A", "uname"}, true, []string{"-l", "pi"}, []string{"pump-17", "-A", "uname"}},
		{[]string{"-R", "https://r:8443", "--port=2222", "pi@pump-17"}, true, []string{"-R", "https://r:8443", "--port=2222"}, []string{"pi@pump-17"}},
		{[]string{"-r", "dir", "pump-17:"}, false, nil, []string{"-r", "dir", "pump-17:"}},
		{[]string{"-l", "100", "f", "pump-17:"}, false, nil, []string{"-l", "100", "f", "pump-17:"}}, // scp's -l is its bandwidth limit
		{[]string{"--token", "rfl_x", "--", "-v", "pump-17"}, true, []string{"--token", "rfl_x"}, []string{"-v", "pump-17"}},
	} {
		ours, rest := splitOurs(tc.args, tc.login)
		if !slices.Equal(ours, tc.ours) || !slices.Equal(rest, tc.rest) {
			t.Errorf("splitOurs(%q, %v) = %q, %q; want %q, %q", tc.args, tc.login, ours, rest, tc.ours, tc.rest)
		}
	}
}

// TestWrongCommandLinesExit2 checks the exit codes and the one-line
// answers to command lines remote cannot run, before anything is dialled.
func TestWrongCommandLinesExit2(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("REMOTE_URL", "")
	t.Setenv("REMOTE_TOKEN", "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "remote reaches devices"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"devices", "--bogus"}, 2, "remote devices: flag provided but not defined: -bogus"},
		{[]string{"forward", "pump-17"}, 2, "want remote forward DEVICE LOCAL:REMOTE"},
		{[]string{"forward", "pump-17", "22:x"}, 2, `port mapping "22:x"`},
		{[]string{"connect", "pump-17"}, 2, "want remote connect DEVICE PORT"},
		{[]string{"connect", "pump-17", "22"}, 1, "remote: not logged in: no reflector"},
		{[]string{"logout"}, 1, "remote: not logged in to any reflector"},
		{[]string{"help"}, 0, ""},
	} {
		var out, errOut strings.Builder
		code := run(t.Context(), tc.args, strings.NewReader(""), &out, &errOut)
		// Without a command, or with an unknown one, the usage follows;
		// every other answer is one line.
		usage := len(tc.args) == 0 || tc.args[0] == "frobnicate"
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) || !usage && strings.Count(errOut.String(), "\n") > 1 {
			t.Errorf("remote %q: exit %d (want %d)\n%s", tc.args, code, tc.code, errOut.String())
		}
	}
}
