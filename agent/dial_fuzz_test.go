package agent

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzRefusalReason: reason, which puts a refused tunnel's answer body
// into the agent's error, never panics and reads at most 1 KiB of the
// body; it returns "" or ": " and one line of at most 200 bytes, taken
// from the start of the body's first 1 KiB; and it returns "" only when
// that part of the body has nothing but blanks before its first newline.
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
		if got == "" {
			if first != "" {
				t.Fatalf("reason(%q) = \"\", but its first line is %q", body, first)
			}
			return
		}
		line, ok := strings.CutPrefix(got, ": ")
		if !ok || line == "" || len(line) > 200 || strings.Contains(line, "\n") || !strings.HasPrefix(first, line) {
			t.Fatalf("reason(%q) = %q", body, got)
		}
	})
}
