package agent

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzRefusalReason: reason, which puts a refused tunnel's answer body
// into the agent's error, never panics and reads at most 1 KiB of the
// body; it returns "" or ": " and one line of at most 200 bytes of valid
// UTF-8 without control characters, the start of the first line of the
// body's first 1 KiB (control characters as blanks, invalid bytes as
// U+FFFD), all of it when that fits; and it returns "" only when that line
// is blank.
func FuzzRefusalReason(f *testing.F) {
	for _, s := range []string{
		"device credentials required\n",
		"tunnel endpoint: subprotocol reflector.v1 required",
		"  \n\nsecond line",
		"",
		"<html>\r\n<title>502</title>",
		strings.Repeat("x", 300),
		strings.Repeat(" ", 1030) + "late",
		"\xff\xfe\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rd := bytes.NewReader(body)
		got := reason(&http.Response{Body: io.NopCloser(rd)})
		if read := len(body) - rd.Len(); read > 1024 {
			t.Fatalf("read %d bytes of the body", read)
		}
		head := string(body[:min(len(body), 1024)])
		first, _, _ := strings.Cut(strings.TrimSpace(head), "\n")
		runes := []rune(first) // an invalid byte is one U+FFFD
		for i, r := range runes {
			if unicode.IsControl(r) {
				runes[i] = ' '
			}
		}
		clean := strings.TrimSpace(string(runes))
		if got == "" {
			if clean != "" {
				t.Fatalf("reason(%q) = \"\", but its first line is %q", body, clean)
			}
			return
		}
		line, ok := strings.CutPrefix(got, ": ")
		if !ok || line == "" || len(line) > 200 || !utf8.ValidString(line) ||
			strings.IndexFunc(line, unicode.IsControl) >= 0 || !strings.HasPrefix(clean, line) ||
			(len(clean) <= 200 && line != clean) {
			t.Fatalf("reason(%q) = %q; its first line is %q", body, got, clean)
		}
	})
}

// TestRefusalReasonIsOneCleanLine: reason kept the \r of a CRLF line and
// cut at byte 200 whatever was there, half a UTF-8 sequence included; the
// agent's log got a carriage return or invalid text from the network.
func TestRefusalReasonIsOneCleanLine(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"<html>\r\n<title>502</title>", ": <html>"},
		{"device credentials required\r\n", ": device credentials required"},
		{strings.Repeat("x", 199) + "é and more", ": " + strings.Repeat("x", 199)},
		{strings.Repeat("€", 70), ": " + strings.Repeat("€", 66)},
		{"bad\x1b[31mred\tand\xfftab", ": bad [31mred and\uFFFDtab"},
		{"\r\n\r\n", ""},
	} {
		if got := reason(&http.Response{Body: io.NopCloser(strings.NewReader(tc.body))}); got != tc.want {
			t.Errorf("reason(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}
