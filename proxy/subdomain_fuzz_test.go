package proxy

import (
	"strings"
	"testing"
)

// browserCookie splits a Set-Cookie line the way a browser does (RFC 6265
// §5.2): the name-value pair before the first ';' (no '=' means a nameless
// cookie whose value is the whole pair), then the attributes, each trimmed
// of spaces and tabs only.
func browserCookie(line string) (name, value string, attrs []string) {
	pair, rest, _ := strings.Cut(line, ";")
	name, value, named := strings.Cut(pair, "=")
	if !named {
		name, value = "", name
	}
	if rest != "" {
		attrs = strings.Split(rest, ";")
	}
	return strings.Trim(name, " \t"), strings.Trim(value, " \t"), attrs
}

// hasFoldPrefix is strings.HasPrefix with ASCII case folding, as browsers
// compare cookie prefixes.
func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// refusedCookie reports whether a cookie of this name and value may not
// come from a device.
func refusedCookie(name, value string) bool {
	return hasFoldPrefix(name, reflectorCookiePrefix) ||
		name == "" && (hasFoldPrefix(value, "__Host-") || hasFoldPrefix(value, "__Secure-"))
}

// FuzzDeviceSetCookie: whatever Set-Cookie line a device sends,
// deviceSetCookie never panics, and a line it keeps
//   - has no Domain attribute (any case, any blanks around it), so the
//     cookie stays on the device's own host;
//   - sets no cookie named __Host-reflector_… in any case, and no nameless
//     cookie whose value starts __Host- or __Secure- (a browser sends it as
//     "__Host-…" alone, which a server may read as a cookie of that name);
//   - keeps the name-value pair byte for byte and every other attribute in
//     order (only Domain goes), and is kept unchanged when filtered again.
//
// A line it drops is one of the refused kinds: it never drops a device's
// ordinary cookie.
func FuzzDeviceSetCookie(f *testing.F) {
	for _, s := range []string{
		"sid=abc; Path=/; HttpOnly",
		"sid=abc; Domain=.localhost; Path=/",
		"sid=abc;domain=localhost",
		"sid=abc; DOMAIN = evil ; Secure",
		"sid=abc;  \tDomain\t=x;Domain;domain=",
		"sid=abc",
		"sid=abc;",
		"__Host-reflector_session=planted; Path=/; Secure",
		"  __HOST-REFLECTOR_DEVICE = x",
		"__host-reflector_handoff=x; Domain=localhost",
		"__Host-reflector",
		"__Host-sid=x; Path=/; Secure",
		"__Host-reflector_session",
		"=__Secure-x; Secure",
		" = __host-x",
		"=plain",
		"",
		";",
		";Domain=x",
		"a=b=c; Max-Age=0; Domain",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		out, ok := deviceSetCookie(line)
		name, value, _ := browserCookie(line)
		refused := refusedCookie(name, value)
		if !ok {
			if out != "" {
				t.Fatalf("deviceSetCookie(%q) dropped the line but returned %q", line, out)
			}
			// Dropping more than a browser would read as refused is
			// allowed for blanks other than space and tab around the
			// name or value ("\v__Host-reflector_session=x").
			if !refused && !refusedCookie(strings.TrimSpace(name), strings.TrimSpace(value)) {
				t.Fatalf("deviceSetCookie(%q) dropped an ordinary cookie", line)
			}
			return
		}
		if refused {
			t.Fatalf("deviceSetCookie(%q) = %q: a cookie the reflector must not let a device set", line, out)
		}
		oname, ovalue, oattrs := browserCookie(out)
		if oname != name || ovalue != value {
			t.Fatalf("deviceSetCookie(%q) = %q: cookie %q=%q became %q=%q", line, out, name, value, oname, ovalue)
		}
		if pair, _, _ := strings.Cut(line, ";"); !strings.HasPrefix(out, pair) {
			t.Fatalf("deviceSetCookie(%q) = %q: the name-value pair changed", line, out)
		}
		for _, a := range oattrs {
			key, _, _ := strings.Cut(a, "=")
			if strings.EqualFold(strings.TrimSpace(key), "domain") || strings.EqualFold(strings.Trim(key, " \t"), "domain") {
				t.Fatalf("deviceSetCookie(%q) = %q: Domain attribute %q kept", line, out, a)
			}
		}
		_, _, attrs := browserCookie(line)
		var want []string
		for _, a := range attrs {
			key, _, _ := strings.Cut(a, "=")
			if !strings.EqualFold(strings.TrimSpace(key), "domain") {
				want = append(want, a)
			}
		}
		if strings.Join(oattrs, ";") != strings.Join(want, ";") {
			t.Fatalf("deviceSetCookie(%q) = %q: attributes %q, want %q", line, out, oattrs, want)
		}
		if again, ok := deviceSetCookie(out); !ok || again != out {
			t.Fatalf("deviceSetCookie(%q) = %q, but that line filtered again is %q, %v", line, out, again, ok)
		}
	})
}
