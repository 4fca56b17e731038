package admin

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseBearer: parseBearer reads the X-Reflector-Authorization values
// of a request. It never panics; it takes exactly one value; a token it
// returns is non-empty, at most maxBearer bytes, without blanks around it,
// is part of the value, follows the scheme "Bearer " (any case), and sent
// again as "Bearer <token>" reads back the same. Conversely every value
// of the form <blanks>Bearer <token><blanks> with such a token is accepted.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{
		"Bearer rfl_0123456789abcdef",
		"bearer   rfl_x  ",
		" BEARER\trfl_x",
		"Bearer",
		"Bearer ",
		"Basic YWxpY2U6cHc=",
		"Bearer a b",
		"Bearerx tok",
		"Bearer " + strings.Repeat("A", maxBearer),
		"Bearer " + strings.Repeat("A", maxBearer+1),
		"",
	} {
		f.Add(s, "", uint8(1))
	}
	f.Add("Bearer rfl_x", "Bearer rfl_y", uint8(2))
	f.Add("Bearer rfl_x", "", uint8(0))
	f.Fuzz(func(t *testing.T, v, extra string, count uint8) {
		var vals []string
		switch count % 3 {
		case 1:
			vals = []string{v}
		case 2:
			vals = []string{v, extra}
		}
		tok, ok := parseBearer(vals)
		if !ok {
			if tok != "" {
				t.Fatalf("parseBearer(%q) refused but returned %q", vals, tok)
			}
		} else {
			if len(vals) != 1 {
				t.Fatalf("parseBearer(%q) = %q: accepted %d values", vals, tok, len(vals))
			}
			trimmed := strings.TrimSpace(v)
			if tok == "" || len(tok) > maxBearer || strings.TrimSpace(tok) != tok || !strings.Contains(v, tok) ||
				len(trimmed) < 7 || !strings.EqualFold(trimmed[:7], "Bearer ") {
				t.Fatalf("parseBearer(%q) = %q", vals, tok)
			}
			if again, ok := parseBearer([]string{"Bearer " + tok}); !ok || again != tok {
				t.Fatalf("parseBearer(%q) = %q, but sent again it is %q, %v", vals, tok, again, ok)
			}
		}
		if len(vals) == 1 {
			trimmed := strings.TrimSpace(v)
			if len(trimmed) >= 7 && strings.EqualFold(trimmed[:7], "bearer ") {
				want := strings.TrimSpace(trimmed[7:])
				if want != "" && len(want) <= maxBearer && (!ok || tok != want) {
					t.Fatalf("parseBearer(%q) = %q, %v; want %q", vals, tok, ok, want)
				}
			}
		}
	})
}

var plainHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// FuzzSameOrigin: sameOrigin guards the admin host's and the device
// subdomains' form posts. Whatever the request says it never panics, and
//   - a Sec-Fetch-Site other than same-origin or none is refused;
//   - two Origin headers are refused;
//   - an accepted Origin is an https origin of this Host (ASCII case
//     aside), not of "x"+Host (an empty Host, which only an HTTP/1.0
//     request can have, matches "https:" and the like);
//   - a request naming no origin at all (a program) is let through;
//   - for an ordinary Host, its own https Origin or Referer is let
//     through, and http://Host, https://Host.evil.example, https://u@Host
//     and "null" are refused.
func FuzzSameOrigin(f *testing.F) {
	f.Add("same-origin", "https://"+adminHost, "", adminHost, false)
	f.Add("", "", "https://"+adminHost+"/login", adminHost, false)
	f.Add("none", "", "", adminHost, false)
	f.Add("same-site", "https://pump-1."+adminHost, "", adminHost, false)
	f.Add("cross-site", "https://evil.example", "", adminHost, false)
	f.Add("", "null", "", adminHost, false)
	f.Add("", "https://"+adminHost, "", adminHost, true)
	f.Add("", "http://"+adminHost, "", adminHost, false)
	f.Add("", "https://DEVICES.example.com", "", domain+":443", false)
	f.Add("", "", "https://x@"+adminHost+"/", adminHost, false)
	f.Add("", "", "", "", false)
	a := &Admin{}
	check := func(site, origin, referer, host string, twoOrigins bool) bool {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.Host = host
		if site != "" {
			r.Header["Sec-Fetch-Site"] = []string{site}
		}
		if twoOrigins {
			r.Header["Origin"] = []string{origin, origin}
		} else if origin != "" {
			r.Header["Origin"] = []string{origin}
		}
		if referer != "" {
			r.Header["Referer"] = []string{referer}
		}
		return a.sameOrigin(r)
	}
	f.Fuzz(func(t *testing.T, site, origin, referer, host string, twoOrigins bool) {
		ok := check(site, origin, referer, host, twoOrigins)
		switch {
		case ok && site != "" && site != "same-origin" && site != "none":
			t.Fatalf("Sec-Fetch-Site %q accepted", site)
		case ok && twoOrigins:
			t.Fatalf("two Origin headers %q accepted", origin)
		case !ok && !twoOrigins && origin == "" && referer == "" && (site == "" || site == "same-origin" || site == "none"):
			t.Fatalf("a request naming no origin refused (Sec-Fetch-Site %q, Host %q)", site, host)
		}
		if ok && !twoOrigins && origin != "" {
			// Only an empty Host (an HTTP/1.0 request without one) matches
			// an https URL without an authority, such as "https:".
			scheme := "https://"
			if host == "" {
				scheme = "https:"
			}
			if !strings.EqualFold(origin[:min(len(origin), len(scheme))], scheme) || !sameHost(origin, asciiUpper(host)) ||
				sameHost(origin, "x"+host) {
				t.Fatalf("Origin %q accepted for Host %q", origin, host)
			}
		}
		if !plainHost.MatchString(host) {
			return
		}
		for _, good := range [][3]string{
			{"same-origin", "https://" + host, ""},
			{"", "https://" + asciiUpper(host), ""},
			{"same-origin", "", "https://" + host + "/login?next=/"},
			{"none", "", ""},
		} {
			if !check(good[0], good[1], good[2], host, false) {
				t.Fatalf("Host %q: a page of its own refused (Sec-Fetch-Site %q, Origin %q, Referer %q)", host, good[0], good[1], good[2])
			}
		}
		for _, bad := range []string{"http://" + host, "https://" + host + ".evil.example", "https://u@" + host, "null", "https://x" + host} {
			if check("", bad, "", host, false) || check("", "", bad+"/", host, false) {
				t.Fatalf("Host %q: Origin or Referer %q accepted", host, bad)
			}
		}
		if check("cross-site", "https://"+host, "", host, false) {
			t.Fatalf("Host %q: Sec-Fetch-Site cross-site accepted", host)
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// FuzzHandoffState: whatever Cookie headers a browser sends to a device
// subdomain, handoffState never panics and returns a state of the shape
// it makes (validState); it reuses the first well-formed hand-off state
// cookie among the first maxSessionCookies of that name and sets none, or,
// when there is none, sets a new one (host-only, Secure, HttpOnly) and
// returns it; and hasState finds a reused state in the request.
func FuzzHandoffState(f *testing.F) {
	const good = "AAAAAAAAAAAAAAAAAAAAAA"
	for _, s := range [][2]string{
		{StateCookie + "=" + good, ""},
		{"a=1; " + StateCookie + "=short; " + StateCookie + "=" + good, ""},
		{StateCookie + "=\"" + good + "\"", "b=2"},
		{StateCookie + "=" + good[:21] + "+", ""},
		{strings.Repeat(StateCookie+"=x; ", 4) + StateCookie + "=" + good, ""},
		{"", StateCookie + "=" + good},
		{"", ""},
		{"__host-reflector_handoff=" + good, ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		r := httptest.NewRequest(http.MethodGet, "https://pump-1."+adminHost+"/", nil)
		for _, l := range []string{line1, line2} {
			if l != "" {
				r.Header["Cookie"] = append(r.Header["Cookie"], l)
			}
		}
		var want string
		for _, v := range cookieValues(r.Header, StateCookie) {
			if validState(v) {
				want = v
				break
			}
		}
		w := httptest.NewRecorder()
		state := handoffState(w, r)
		if !validState(state) {
			t.Fatalf("Cookie %q: state %q", r.Header["Cookie"], state)
		}
		set := w.Result().Cookies()
		if want != "" {
			if state != want || len(set) != 0 || !hasState(r, state) {
				t.Fatalf("Cookie %q: state %q, set %v; want %q reused", r.Header["Cookie"], state, set, want)
			}
			return
		}
		if len(set) != 1 || set[0].Name != StateCookie || set[0].Value != state || set[0].Domain != "" ||
			!set[0].Secure || !set[0].HttpOnly || set[0].Path != "/" {
			t.Fatalf("Cookie %q: state %q, set %+v", r.Header["Cookie"], state, set)
		}
	})
}
