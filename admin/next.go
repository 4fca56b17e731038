package admin

import (
	"net"
	"net/url"
	"strings"

	"github.com/reflector-dev/reflector/tunnel"
)

// Where a login or hand-off sends the browser afterwards comes from the
// request (a "next" parameter), so it is checked: a path on the same host,
// or, after a login, a device subdomain of this reflector. Anything else
// falls back to "/" — the reflector is never an open redirect.

// maxNext bounds a next URL.
const maxNext = 2048

// localPath reports whether s is a path (with query) on the host that
// received it. Browsers read "//evil", "/\evil" and "/<TAB>/evil" as
// another host, so a second slash or backslash at the start, any
// backslash and any control character, space or non-ASCII byte is refused;
// a legitimate next is the percent-encoded request URI it was taken from.
func localPath(s string) bool {
	if len(s) == 0 || len(s) > maxNext || s[0] != '/' || !cleanURLBytes(s) {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
}

// cleanURLBytes reports whether s holds only printable ASCII other than
// space and backslash.
func cleanURLBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// loginNext returns where a login sends the browser: next if it is a
// local path or https://<device>.<domain>[:port]/... on this reflector's
// port, else "/".
func (a *Admin) loginNext(next string) string {
	if localPath(next) || a.deviceURL(next) {
		return next
	}
	return "/"
}

// pathOr returns s if it is a local path, else "/".
func pathOrRoot(s string) string {
	if localPath(s) {
		return s
	}
	return "/"
}

// deviceURL reports whether s is an absolute https URL of a device
// subdomain, on the port browsers reach this reflector at.
func (a *Admin) deviceURL(s string) bool {
	if len(s) > maxNext || !cleanURLBytes(s) {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Opaque != "" || u.Host == "" {
		return false
	}
	host, port := u.Host, ""
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		host, port = h, p
	}
	if port == "" {
		port = "443"
	}
	if port != a.publicPort() {
		return false
	}
	id, ok := strings.CutSuffix(host, "."+a.cfg.Domain)
	if !ok || !tunnel.ValidDeviceID(id) {
		return false
	}
	// The text after the host must be the path, as the parsed URL has it:
	// no percent-encoded host, nothing the parser and a browser might read
	// differently.
	tail, ok := strings.CutPrefix(s, "https://"+u.Host)
	if !ok || (tail != "" && tail[0] != '/') {
		return false
	}
	return tail == "" || localPath(u.RequestURI())
}
