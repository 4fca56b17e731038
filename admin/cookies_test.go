package admin

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestStripCookiesKeepsTheDevicesCookiesByteForByte(t *testing.T) {
	t.Parallel()
	d, s := DeviceCookie+"=rfs_x", SessionCookie+"=rfs_y"
	for _, tc := range []struct {
		in   []string
		want []string // nil: no Cookie header left
	}{
		{[]string{"a=1"}, []string{"a=1"}},
		{[]string{"a=1; " + d}, []string{"a=1"}},
		{[]string{d + "; a=1"}, []string{"a=1"}},
		{[]string{"a=1; " + d + "; b=2"}, []string{"a=1; b=2"}},
		{[]string{"a=1;" + d + ";b=\"x y\""}, []string{"a=1;b=\"x y\""}},
		{[]string{d}, nil},
		{[]string{d + "; " + s}, nil},
		{[]string{d, "a=1"}, []string{"a=1"}},
		{[]string{"a=1", s + ";  b=2 ;c"}, []string{"a=1", "b=2 ;c"}},
		{[]string{"x" + d}, []string{"x" + d}}, // another name
		{[]string{"a=" + DeviceCookie}, []string{"a=" + DeviceCookie}},
		{[]string{" " + d + " ; a=1"}, []string{"a=1"}},
	} {
		h := http.Header{"Cookie": slices.Clone(tc.in)}
		stripCookies(h, DeviceCookie, SessionCookie)
		if got := h["Cookie"]; !slices.Equal(got, tc.want) {
			t.Errorf("strip %q = %q, want %q", tc.in, got, tc.want)
		}
		if _, ok := h["Cookie"]; ok != (tc.want != nil) {
			t.Errorf("strip %q left the header: %v", tc.in, ok)
		}
	}
}

func TestCookieValuesReadsWhatStripRemoves(t *testing.T) {
	t.Parallel()
	h := http.Header{"Cookie": {"a=1; " + DeviceCookie + "=one", DeviceCookie + "=\"two\";b=2"}}
	if got := cookieValues(h, DeviceCookie); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("values %q", got)
	}
	h = http.Header{"Cookie": {strings.Repeat(DeviceCookie+"=x; ", 100)}}
	if n := len(cookieValues(h, DeviceCookie)); n != maxSessionCookies {
		t.Fatalf("%d values read from 100, want %d", n, maxSessionCookies)
	}
}

// FuzzStripCookies checks that no cookie of ours survives, and that every
// other pair is passed on unchanged and in order (empty pairs, which mean
// nothing, may go).
func FuzzStripCookies(f *testing.F) {
	f.Add("a=1; " + DeviceCookie + "=x; b=2")
	f.Add(SessionCookie + "=y;" + DeviceCookie + "=x")
	f.Add(";;  ; =; a")
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Cookie": {line}}
		stripCookies(h, DeviceCookie, SessionCookie)
		out := strings.Join(h["Cookie"], ";")
		if len(cookieValues(h, DeviceCookie))+len(cookieValues(h, SessionCookie)) != 0 {
			t.Fatalf("strip %q left %q", line, out)
		}
		var want []string
		for pair := range strings.SplitSeq(line, ";") {
			k, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if k != DeviceCookie && k != SessionCookie && strings.TrimSpace(pair) != "" {
				want = append(want, strings.TrimSpace(pair))
			}
		}
		var got []string
		if out != "" {
			for pair := range strings.SplitSeq(out, ";") {
				if strings.TrimSpace(pair) != "" {
					got = append(got, strings.TrimSpace(pair))
				}
			}
		}
		if strings.Join(got, ";") != strings.Join(want, ";") {
			t.Fatalf("strip %q = %q; kept pairs %q, want %q", line, out, got, want)
		}
	})
}
