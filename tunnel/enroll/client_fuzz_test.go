package enroll

import (
	"encoding/json"
	"mime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzEnrollAnswer: what the agent makes of the reflector's answer to an
// enrolment (or of whatever answered in its place). parseSecret never
// panics; it returns a secret only from a JSON answer for this device, and
// that answer as the handler writes it reads back the same secret; a
// refusal returns no secret. message, the reason shown for any other
// answer, is one line without control characters or invalid UTF-8, with no
// blanks around it, at most maxMessage runes and "…"; and it is stable:
// sent back as the handler's {"error": ...} it reads the same.
func FuzzEnrollAnswer(f *testing.F) {
	const device = "pump-17"
	for _, s := range [][2]string{
		{`{"device":"pump-17","secret":"s3cret"}`, "application/json"},
		{`{"device":"pump-17","secret":"s3cret"}` + "\n", "Application/JSON; charset=utf-8"},
		{`{"device":"pump-18","secret":"s3cret"}`, "application/json"},
		{`{"device":"pump-17","secret":""}`, "application/json"},
		{`{"device":"pump-17","secret":"s3cret"}`, "text/html"},
		{`{"error":"enrolment key expired"}`, "application/json"},
		{`{"error":"line one\nline two\u001b[31m"}`, "application/json"},
		{"<html><body>Captive portal</body></html>", "text/html"},
		{"502 Bad Gateway\r\nmore", "text/plain"},
		{"\xff\xfe  ", ""},
		{`{"error":"` + strings.Repeat("é", maxMessage+5) + `"}`, "application/json"},
		{"null", "application/json"},
	} {
		f.Add([]byte(s[0]), s[1])
	}
	const u = "https://reflector.example/enroll/v1"
	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		secret, err := parseSecret(data, contentType, u, device)
		if err != nil {
			if secret != "" {
				t.Fatalf("parseSecret(%q, %q) refused (%v) but returned %q", data, contentType, err, secret)
			}
		} else {
			if mt, _, _ := mime.ParseMediaType(contentType); secret == "" || mt != "application/json" {
				t.Fatalf("parseSecret(%q, %q) = %q", data, contentType, secret)
			}
			b, _ := json.Marshal(response{Device: device, Secret: secret})
			if again, err := parseSecret(b, "application/json", u, device); err != nil || again != secret {
				t.Fatalf("parseSecret(%q) = %q, but %s reads as %q, %v", data, secret, b, again, err)
			}
			if _, err := parseSecret(b, "application/json", u, "pump-18"); err == nil {
				t.Fatalf("%s accepted for another device", b)
			}
		}
		msg := message(data)
		if !utf8.ValidString(msg) || strings.TrimSpace(msg) != msg || utf8.RuneCountInString(msg) > maxMessage+1 {
			t.Fatalf("message(%q) = %q", data, msg)
		}
		for _, r := range msg {
			if unicode.IsControl(r) || r == utf8.RuneError {
				t.Fatalf("message(%q) = %q: control character %U", data, msg, r)
			}
		}
		if n := utf8.RuneCountInString(msg); n == maxMessage+1 && !strings.HasSuffix(msg, "…") {
			t.Fatalf("message(%q) = %q: %d runes", data, msg, n)
		}
		b, _ := json.Marshal(errorBody{Error: msg})
		if again := message(b); again != msg {
			t.Fatalf("message(%q) = %q, but %s reads as %q", data, msg, b, again)
		}
	})
}
