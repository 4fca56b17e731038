package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

// TestRemoteCLILoginTrustsOnFirstUseAndRefusesAChange logs in to a
// self-signed reflector: the fingerprint is shown and kept only once the
// user agrees, the token lands in a 0600 credentials file and works for
// devices and connect; logout revokes it; logging in again replaces the
// host's token; and a reflector on the same address with another
// certificate is refused loudly.
func TestRemoteCLILoginTrustsOnFirstUseAndRefusesAChange(t *testing.T) {
	echo := echoServer(t)
	d := deploy(t, fmt.Sprint(echo))
	env := remoteEnv(t)
	dir := configDir(env)
	fp := d.fingerprint(t)

	// Refused trust: nothing kept.
	_, errOut, code := runRemote(t, env, "no\n", "login", d.url())
	if code == 0 || !strings.Contains(errOut, fp) || !strings.Contains(errOut, "not trusted") {
		t.Fatalf("login answered no: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "credentials")); err == nil {
		t.Fatal("credentials kept after a refused login")
	}

	out, errOut, code := runRemote(t, env, "yes\nalice\nalice-pass\n", "login", d.url())
	if code != 0 || !strings.Contains(out, "Logged in") {
		t.Fatalf("login: exit %d\n%s%s", code, out, errOut)
	}
	known, _ := os.ReadFile(filepath.Join(dir, "known_reflectors"))
	if want := fmt.Sprintf("localhost:%d %s\n", d.port, fp); string(known) != want {
		t.Fatalf("known_reflectors %q, want %q", known, want)
	}
	credPath := filepath.Join(dir, "credentials")
	fi, err := os.Stat(credPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v", err, fi.Mode().Perm())
	}
	var creds struct {
		Logins map[string]struct{ User, Token, TokenID string }
	}
	b, _ := os.ReadFile(credPath)
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	login := creds.Logins[d.url()]
	if login.User != "alice" || !tokenPattern.MatchString(login.Token) {
		t.Fatalf("credentials %s", b)
	}
	if out, _ := reflectorCmd(t, "", "token", "list", "--user", "alice", "--data", d.data); !strings.Contains(out, "remote@") || strings.Contains(out, "remote-login") {
		t.Fatalf("tokens after login (want the host's, not the 24-hour one login made it with):\n%s", out)
	}

	out, errOut, code = runRemote(t, env, "", "devices")
	if code != 0 || !strings.Contains(out, "pump-17") || !strings.Contains(out, "online") {
		t.Fatalf("devices: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runRemote(t, env, "", "devices", "--json", "--online")
	var list []struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "pump-17" {
		t.Fatalf("devices --json --online: exit %d\n%s", code, out)
	}
	out, errOut, code = runRemote(t, env, "ping", "connect", "pump-17", fmt.Sprint(echo))
	if code != 0 || out != "ping" {
		t.Fatalf("connect: exit %d %q\n%s", code, out, errOut)
	}

	// logout revokes: the token no longer opens a stream.
	out, errOut, code = runRemote(t, env, "", "logout")
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("logout: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runRemote(t, remoteEnv(t, "REMOTE_URL="+d.url(), "REMOTE_USER=alice", "REMOTE_TOKEN="+login.Token,
		"REMOTE_FINGERPRINT="+fp), "ping", "connect", "pump-17", fmt.Sprint(echo))
	if code == 0 || !strings.Contains(errOut, "refused the credentials") || !strings.Contains(errOut, "407") {
		t.Fatalf("connect with the revoked token: exit %d\n%s", code, errOut)
	}
	if _, errOut, code = runRemote(t, env, "", "devices"); code == 0 || !strings.Contains(errOut, "not logged in") {
		t.Fatalf("devices after logout: exit %d\n%s", code, errOut)
	}

	// Logged in again (the certificate is known: no question), then the
	// reflector's address answers with another certificate.
	for range 2 {
		if out, errOut, code = runRemote(t, env, "alice\nalice-pass\n", "login", d.url()); code != 0 {
			t.Fatalf("login again: exit %d\n%s%s", code, out, errOut)
		}
	}
	// The second login here revoked the first one's token.
	if out, _ := reflectorCmd(t, "", "token", "list", "--user", "alice", "--data", d.data); strings.Count(out, "remote@") != 1 {
		t.Fatalf("tokens after logging in twice (want one of this host's):\n%s", out)
	}
	d.srv.stop()
	_, fp2 := serveProc(t, t.TempDir(), d.port)
	for _, args := range [][]string{{"devices"}, {"connect", "pump-17", fmt.Sprint(echo)}, {"login", d.url()}} {
		_, errOut, code = runRemote(t, env, "yes\nalice\nalice-pass\n", args...)
		if code == 0 || !strings.Contains(errOut, "CHANGED") || !strings.Contains(errOut, fp) || !strings.Contains(errOut, fp2) ||
			strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Fatalf("remote %s against a changed certificate: exit %d\n%s", args[0], code, errOut)
		}
	}
}

// TestRemoteCLILoginAsksATOTPUserForTheCode logs in as a user with TOTP:
// remote asks for the one-time password after the password, and the token
// it keeps works; a wrong code is refused.
func TestRemoteCLILoginAsksATOTPUserForTheCode(t *testing.T) {
	d := deploy(t, "22")
	out, err := reflectorCmd(t, "", "user", "totp", "enable", "alice", "--begin", "--data", d.data)
	raw := regexp.MustCompile(`otpauth://totp/\S+`).FindString(out)
	u, uerr := url.Parse(raw)
	if err != nil || raw == "" || uerr != nil {
		t.Fatalf("totp enable --begin: %v\n%s", err, out)
	}
	secret := u.Query().Get("secret")
	now := time.Now()
	code, _ := totp.GenerateCode(secret, now)
	if out, err := reflectorCmd(t, "", "user", "totp", "enable", "alice", "--code", code, "--data", d.data); err != nil {
		t.Fatalf("totp enable: %v\n%s", err, out)
	}
	env := remoteEnv(t, "REMOTE_FINGERPRINT="+d.fingerprint(t))

	_, errOut, exit := runRemote(t, env, "alice\nalice-pass\n000000\n", "login", d.url())
	if exit != 1 || !strings.Contains(errOut, "One-time password") || !strings.Contains(errOut, "refused the credentials") {
		t.Fatalf("login with a wrong code: exit %d\n%s", exit, errOut)
	}
	// Codes are single use and the reflector accepts one step of skew:
	// the next step's code is fresh.
	next, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
	out, errOut, exit = runRemote(t, env, "alice\nalice-pass\n"+next+"\n", "login", d.url())
	if exit != 0 || !strings.Contains(errOut, "One-time password") {
		t.Fatalf("login with TOTP: exit %d\n%s%s", exit, out, errOut)
	}
	if out, errOut, exit = runRemote(t, env, "", "devices"); exit != 0 || !strings.Contains(out, "pump-17") {
		t.Fatalf("devices with the TOTP login's token: exit %d\n%s%s", exit, out, errOut)
	}
}
