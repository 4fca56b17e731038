package control

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boombuler/barcode/qr"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/store"
)

var otpauthRE = regexp.MustCompile(`otpauth://\S+`)

// secretOf returns the base32 secret of an otpauth URL.
func secretOf(t *testing.T, otpURL string) string {
	t.Helper()
	key, err := otp.NewKeyFromURL(otpURL)
	if err != nil {
		t.Fatalf("parse %q: %v", otpURL, err)
	}
	return key.Secret()
}

// codeAt is the code an authenticator app shows at time at.
func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// rightCode is the code for now.
func rightCode(t *testing.T) func(string) string {
	return func(secret string) string { return codeAt(t, secret, time.Now()) }
}

// wrongCode is a code valid for none of the steps around now.
func wrongCode(t *testing.T) func(string) string {
	return func(secret string) string {
		now := time.Now()
		var valid []string
		for _, d := range []time.Duration{-60 * time.Second, -30 * time.Second, 0, 30 * time.Second, 60 * time.Second} {
			valid = append(valid, codeAt(t, secret, now.Add(d)))
		}
		code := []byte(valid[2])
		for slices.Contains(valid, string(code)) {
			code[5] = '0' + (code[5]-'0'+1)%10
		}
		return string(code)
	}
}

// totpDialogue runs fn (Run or Main) with pipes for stdin and stdout, the
// way a person would: it reads stdout until an otpauth URL shows and then
// types answer(secret) and Enter. It returns the exit code, the output and
// the URL seen ("" if none).
func totpDialogue(t *testing.T, fn func(stdin io.Reader, stdout, stderr io.Writer) int, answer func(secret string) string) (code int, stdout, stderr, otpURL string) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := fn(inR, outW, &errb)
		outW.Close()
		done <- code
	}()
	var out strings.Builder
	typed := make(chan struct{})
	sc := bufio.NewScanner(outR)
	answered := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if u := otpauthRE.FindString(line); u != "" && !answered {
			answered, otpURL = true, u
			// Type beside reading: the command prints more before it
			// reads stdin, and both pipes are unbuffered.
			go func() {
				io.WriteString(inW, answer(secretOf(t, u))+"\n")
				close(typed)
			}()
		}
	}
	code = <-done
	inW.Close() // unblocks a writer the command never read from
	inR.Close()
	if answered {
		<-typed
	}
	return code, out.String(), errb.String(), otpURL
}

// runner adapts Run with env for totpDialogue.
func runner(env Env, args ...string) func(io.Reader, io.Writer, io.Writer) int {
	return func(stdin io.Reader, stdout, stderr io.Writer) int {
		return Run(context.Background(), env, args, stdin, stdout, stderr)
	}
}

// mainRunner adapts Main on dir for totpDialogue.
func mainRunner(dir string, args ...string) func(io.Reader, io.Writer, io.Writer) int {
	return func(stdin io.Reader, stdout, stderr io.Writer) int {
		return Main(context.Background(), dir, args, stdin, stdout, stderr, func() (string, string) {
			return "https://offline.example:8443", ""
		})
	}
}

// enableTOTP switches TOTP on for name directly in the store and returns
// the secret.
func enableTOTP(t *testing.T, s *store.Store, name string) string {
	t.Helper()
	u, err := s.BeginTOTP(name, "test")
	if err != nil {
		t.Fatal(err)
	}
	secret := secretOf(t, u)
	if err := s.ConfirmTOTP(name, codeAt(t, secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	return secret
}

func totpOn(t *testing.T, s *store.Store, name string) bool {
	t.Helper()
	u, err := s.User(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.TOTP
}

func TestTOTPEnableShowsQRCodeAsksForCodeAndConfirms(t *testing.T) {
	env := newTestEnv(t)
	changed := countAccessChanged(&env)
	mustRun(t, env, "", "user", "add", "alice")

	code, stdout, stderr, otpURL := totpDialogue(t, runner(env.env(t), "user", "totp", "enable", "alice"), rightCode(t))
	if code != 0 {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !totpOn(t, env.Store, "alice") {
		t.Error("TOTP off after a right code")
	}
	for _, want := range []string{"TOTP enrolment for alice started", "█", "or type this key into the app: ", "TOTP enabled for alice\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{codePrompt, "no longer a proxy password", "reflector token create --user alice"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	u, err := url.Parse(otpURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("issuer"); got != "Reflector (reflector.example)" {
		t.Errorf("issuer %q, want the reflector's host in it", got)
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTOTP, User: "alice", Reason: "enabled"})
	if changed.Load() == 0 {
		t.Error("AccessChanged not called: the password stopped being a proxy password")
	}
}

func TestTOTPEnableWrongCodeLeavesItOff(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	code, _, stderr, _ := totpDialogue(t, runner(env.env(t), "user", "totp", "enable", "alice"), wrongCode(t))
	if code != 1 || !strings.Contains(stderr, "reflector: enable TOTP for alice: wrong code; TOTP stays off") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
	if totpOn(t, env.Store, "alice") {
		t.Error("TOTP on after a wrong code")
	}
	if e := lastAudit(t, env, store.AuditTOTP); e.Reason != "enrolment started" {
		t.Errorf("last TOTP event %+v, want only the start", e)
	}
}

func TestTOTPEnableNoCodeLeavesEnrollmentPendingForCode(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	code, stdout, stderr := run(t, env, "\n", "user", "totp", "enable", "alice")
	if code != 1 || !strings.Contains(stderr, "no code entered; TOTP stays off") ||
		!strings.Contains(stderr, "reflector user totp enable alice --code CODE") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	secret := secretOf(t, otpauthRE.FindString(stdout))
	if code, _, stderr := run(t, env, "", "user", "totp", "enable", "alice", "--code", codeAt(t, secret, time.Now())); code != 0 {
		t.Fatalf("--code: %d %s", code, stderr)
	}
	if !totpOn(t, env.Store, "alice") {
		t.Error("TOTP off")
	}
}

func TestTOTPEnableBeginThenCode(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")

	// --begin prints and returns without reading stdin.
	var out, errb bytes.Buffer
	code := Run(context.Background(), env.env(t), []string{"user", "totp", "enable", "--begin", "alice"}, failingReader{t}, &out, &errb)
	if code != 0 {
		t.Fatalf("--begin: code %d: %s", code, errb.String())
	}
	if strings.Contains(errb.String(), codePrompt) {
		t.Error("--begin prompted for a code")
	}
	secret := secretOf(t, otpauthRE.FindString(out.String()))
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTOTP, User: "alice", Reason: "enrolment started"})

	now := codeAt(t, secret, time.Now())
	steps := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"alice", "--code", "12345"}, 1, "want the 6 digits"},
		{[]string{"alice", "--code", "abcdef"}, 1, "want the 6 digits"},
		{[]string{"alice", "--code", wrongCode(t)(secret)}, 1, "wrong code; TOTP stays off"},
		{[]string{"alice", "--begin", "--code", "123456"}, 2, "--begin and --code exclude each other"},
		{[]string{"nobody", "--code", "123456"}, 1, `"nobody": not found`},
		// Apps show "123 456"; the space is not part of the code.
		{[]string{"alice", "--code", now[:3] + " " + now[3:]}, 0, ""},
		{[]string{"alice", "--begin"}, 1, "TOTP is already enabled"},
		{[]string{"alice", "--code", "123456"}, 1, "TOTP is already enabled"},
	}
	for _, st := range steps {
		code, _, stderr := run(t, env, "", append([]string{"user", "totp", "enable"}, st.args...)...)
		if code != st.code || !strings.Contains(stderr, st.stderr) {
			t.Errorf("%q: code %d, stderr %q; want %d, %q", st.args, code, stderr, st.code, st.stderr)
		}
	}
	if !totpOn(t, env.Store, "alice") {
		t.Error("TOTP off")
	}

	// Confirming with nothing pending says so.
	mustRun(t, env, "", "user", "add", "bob")
	if code, _, stderr := run(t, env, "", "user", "totp", "enable", "bob", "--code", "123456"); code != 1 || !strings.Contains(stderr, "no enrolment pending") {
		t.Errorf("bob: code %d stderr %q", code, stderr)
	}
}

func TestTOTPDisable(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	mustRun(t, env, "", "user", "add", "bob")
	secret := enableTOTP(t, env.Store, "alice")
	// The code for now was accepted by the enrolment and is never accepted
	// again; the next step's is within the skew.
	next := codeAt(t, secret, time.Now().Add(30*time.Second))

	steps := []struct {
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"", []string{"bob"}, 1, "", "disable TOTP for bob: TOTP is not enabled"},
		{"", []string{"nobody", "--force"}, 1, "", "not found"},
		{"", []string{"alice", "--code", "123456", "--force"}, 2, "", "--code and --force exclude each other"},
		{"\n", []string{"alice"}, 1, "", "no code entered; TOTP stays on"},
		{wrongCode(t)(secret) + "\n", []string{"alice"}, 1, "", "wrong code; TOTP stays on"},
		{"", []string{"alice", "--code", "12"}, 1, "", "want the 6 digits"},
		{next + "\n", []string{"alice"}, 0, "TOTP disabled for alice", codePrompt},
	}
	for _, st := range steps {
		code, stdout, stderr := run(t, env, st.stdin, append([]string{"user", "totp", "disable"}, st.args...)...)
		if code != st.code || !strings.Contains(stdout, st.stdout) || !strings.Contains(stderr, st.stderr) {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want %d, %q, %q", st.args, code, stdout, stderr, st.code, st.stdout, st.stderr)
		}
	}
	if totpOn(t, env.Store, "alice") {
		t.Fatal("TOTP still on")
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTOTP, User: "alice", Reason: "disabled"})

	// --force: for a lost authenticator; it also cancels a pending enrolment.
	mustRun(t, env, "", "user", "add", "carol")
	enableTOTP(t, env.Store, "carol")
	if out := mustRun(t, env, "", "user", "totp", "disable", "carol", "--force"); !strings.Contains(out, "TOTP disabled for carol") {
		t.Errorf("--force: %q", out)
	}
	if totpOn(t, env.Store, "carol") {
		t.Error("TOTP still on after --force")
	}
	checkAudit(t, env, store.AuditEvent{Kind: store.AuditTOTP, User: "carol", Reason: "disabled by force"})
	if _, err := env.Store.BeginTOTP("bob", "test"); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, env, "", "user", "totp", "disable", "bob", "--force"); !strings.Contains(out, "pending TOTP enrolment for bob cancelled") {
		t.Errorf("--force on a pending enrolment: %q", out)
	}
	if code, _, stderr := run(t, env, "", "user", "totp", "disable", "bob", "--force"); code != 1 || !strings.Contains(stderr, "TOTP is not enabled") {
		t.Errorf("--force twice: code %d stderr %q", code, stderr)
	}
}

func TestUserListShowsTOTP(t *testing.T) {
	env := newTestEnv(t)
	mustRun(t, env, "", "user", "add", "alice")
	mustRun(t, env, "", "user", "add", "bob")
	enableTOTP(t, env.Store, "alice")
	out := mustRun(t, env, "", "user", "list")
	if !regexp.MustCompile(`(?m)^alice +user +- +yes `).MatchString(out) || !regexp.MustCompile(`(?m)^bob +user +- +- `).MatchString(out) {
		t.Errorf("user list:\n%s", out)
	}
}

// TestWriteQRDrawsTheCodeWithLightModulesAsBlocks reads the half blocks
// back into modules and compares them with the encoder's.
func TestWriteQRDrawsTheCodeWithLightModulesAsBlocks(t *testing.T) {
	const content = "otpauth://totp/Reflector%20%28r.example%29:alice?algorithm=SHA1&digits=6&issuer=Reflector&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	var b bytes.Buffer
	if err := writeQR(&b, content); err != nil {
		t.Fatal(err)
	}
	code, err := qr.Encode(content, qr.M, qr.Auto)
	if err != nil {
		t.Fatal(err)
	}
	n := code.Bounds().Dx()
	size := n + 2*qrQuietZone

	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != (size+1)/2 {
		t.Fatalf("%d lines, want %d", len(lines), (size+1)/2)
	}
	light := make([][]bool, 2*len(lines))
	for y, line := range lines {
		runes := []rune(line)
		if len(runes) != size {
			t.Fatalf("line %d: %d columns, want %d", y, len(runes), size)
		}
		light[2*y], light[2*y+1] = make([]bool, size), make([]bool, size)
		for x, r := range runes {
			switch r {
			case '█':
				light[2*y][x], light[2*y+1][x] = true, true
			case '▀':
				light[2*y][x] = true
			case '▄':
				light[2*y+1][x] = true
			case ' ':
			default:
				t.Fatalf("line %d: unexpected %q", y, r)
			}
		}
	}
	for y := range size {
		for x := range size {
			mx, my := x-qrQuietZone, y-qrQuietZone
			want := true // quiet zone
			if mx >= 0 && my >= 0 && mx < n && my < n {
				want = !isDark(code.At(mx, my))
			}
			if light[y][x] != want {
				t.Fatalf("module (%d,%d): light %v, want %v", mx, my, light[y][x], want)
			}
		}
	}
	// A finder pattern's corner is dark, drawn as a blank.
	if isDark(code.At(0, 0)) != true {
		t.Error("top-left module is not dark")
	}
}
