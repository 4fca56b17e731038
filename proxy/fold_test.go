package proxy

import "testing"

// Header tokens, schemes and host names compare in ASCII case only: Unicode
// folding would take "ſ" (long s) for "s" and the Kelvin sign for "k", so a
// value the device or a browser sees as something else would pass here.
func TestEqualFoldASCIIFoldsOnlyASCII(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"trailers", "TRAILERS", true},
		{"Upgrade", "upgrade", true},
		{"", "", true},
		{"TRAILERſ", "trailers", false},
		{"Baſic", "Basic", false},
		{"\u212Aey", "key", false},
		{"dev1.example:443", "DEV1.EXAMPLE:443", true},
		{"basic", "basics", false},
		{"[", "{", false}, // 0x5B and 0x7B differ by 'a'-'A' but are not letters
	} {
		if got := equalFoldASCII(c.a, c.b); got != c.want {
			t.Errorf("equalFoldASCII(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestProxyAuthSchemeIsASCII(t *testing.T) {
	if _, _, ok := parseProxyAuth("Baſic YWxpY2U6cHc="); ok {
		t.Error(`"Baſic" accepted as the Basic scheme`)
	}
	if user, _, ok := parseProxyAuth("bAsIc YWxpY2U6cHc="); !ok || user != "alice" {
		t.Errorf("bAsIc: user %q, ok %v", user, ok)
	}
}
