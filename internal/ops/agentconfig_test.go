package ops

import "testing"

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"https://localhost:8443": "https://localhost:8443",
		"pump-17":                "pump-17",
		"":                       "''",
		"a b":                    "'a b'",
		"it's":                   `'it'\''s'`,
		"$(rm -rf /)":            "'$(rm -rf /)'",
	}
	for in, want := range tests {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
