package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// maxSessionCookies bounds how many cookies of one of our names a request
// may make us look up. A browser sends one; more are somebody's noise.
const maxSessionCookies = 4

// cookieValues returns the values of the cookies called name in h's Cookie
// headers, in order, at most maxSessionCookies. It reads the pairs the
// same way stripCookie drops them, so the cookie that authenticated a
// request is the one removed from it.
func cookieValues(h http.Header, name string) []string {
	var vals []string
	for _, line := range h.Values("Cookie") {
		for pair := range strings.SplitSeq(line, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if k == name && len(vals) < maxSessionCookies {
				vals = append(vals, strings.Trim(v, `"`))
			}
		}
	}
	return vals
}

// stripCookies removes the cookies called one of names from h's Cookie
// headers, and the headers left empty. Every other byte of the headers
// stays as it was: the device's own cookies reach it unchanged.
func stripCookies(h http.Header, names ...string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		if out, changed := stripCookieLine(line, names); !changed {
			kept = append(kept, line)
		} else if out != "" {
			kept = append(kept, out)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// stripCookieLine removes the pairs called one of names from one Cookie
// header value. Each kept pair keeps its bytes, the separator before it
// included, except that a line no longer starts with a space.
func stripCookieLine(line string, names []string) (string, bool) {
	var (
		b       strings.Builder
		changed bool
	)
	for pair := range strings.SplitSeq(line, ";") {
		k, _, _ := strings.Cut(strings.TrimSpace(pair), "=")
		if containsName(names, k) {
			changed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		} else if changed {
			pair = strings.TrimLeft(pair, " \t")
		}
		b.WriteString(pair)
	}
	if !changed {
		return line, false
	}
	return b.String(), true
}

func containsName(names []string, k string) bool {
	for _, n := range names {
		if k == n {
			return true
		}
	}
	return false
}

// setCookie sets one of our session cookies: host-only (no Domain, as the
// __Host- prefix demands), HttpOnly, Secure, SameSite=Lax. No Max-Age: the
// session record ends it (8 h idle, 24 h absolute), and the browser drops
// it when it closes; a second clock in the browser could only disagree.
func setCookie(w http.ResponseWriter, name, token string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: token, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode})
}

// stateTTL is how long a browser keeps its hand-off state: a login with
// TOTP fits, a forgotten tab does not.
const stateTTL = 10 * time.Minute

// handoffState returns the browser's hand-off state on a device subdomain,
// setting a new one if it has none: several tabs share one, so a second
// hand-off does not spoil the first. It is not cleared after use: codes are
// single-use, and the state only says which browser may redeem one.
func handoffState(w http.ResponseWriter, r *http.Request) string {
	for _, v := range cookieValues(r.Header, StateCookie) {
		if validState(v) {
			return v
		}
	}
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24)
	state := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: StateCookie, Value: state, Path: "/", MaxAge: int(stateTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	return state
}

// validState reports whether s has the shape handoffState gives.
func validState(s string) bool {
	if len(s) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// hasState reports whether r carries the hand-off state want.
func hasState(r *http.Request, want string) bool {
	for _, v := range cookieValues(r.Header, StateCookie) {
		if subtle.ConstantTimeCompare([]byte(v), []byte(want)) == 1 {
			return true
		}
	}
	return false
}

// clearCookie tells the browser to forget one of our cookies.
func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true,
		SameSite: http.SameSiteLaxMode})
}
