package web

import (
	"net/http"
	"net/url"
	"strings"
)

// exactOrigin reports whether r carries one Origin, and it is the admin
// host's own: https, this request's host and port (the router sends only
// admin-host requests here). The browser's VNC viewer and SSH terminal
// check it before their WebSocket looks at the session: a WebSocket is not
// bound by the same-origin policy, and every device host is the same site
// as the admin host. No Origin at all is refused too: browsers always send
// one on a WebSocket, and nothing else should hold a session cookie.
func exactOrigin(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	if len(origins) != 1 {
		return false
	}
	u, err := url.Parse(origins[0])
	if err != nil || u.Scheme != "https" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	return strings.EqualFold(strings.TrimSuffix(u.Host, ":443"), strings.TrimSuffix(r.Host, ":443"))
}
