package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"

	"github.com/reflector-dev/reflector/store"
)

// CSRF tokens of admin-host sessions. A page of the admin host (the web
// UI) and a script using the session cookie with the REST API must echo
// the session's token on every request that changes something: the cookie
// alone is sent by the browser whatever page asks, and every device
// subdomain is the same site as the admin host (DESIGN.md, "Web UI and
// API").
//
// The token is derived from the session's secret (the cookie's value),
// which only the browser holds (the cookie is HttpOnly), so it needs no
// state of its own and ends with the session.

// CSRFHeader carries the CSRF token on REST API requests.
const CSRFHeader = "X-CSRF-Token"

// csrfToken is the CSRF token of the session whose cookie value is
// sessionToken.
func csrfToken(sessionToken string) string {
	sum := sha256.Sum256([]byte("reflector csrf v1\x00" + sessionToken))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

// APISession is who r's admin-host session cookie belongs to, for the REST
// API: the credential and the session's CSRF token. ok is false when r
// carries no good session; err is a store fault.
func (a *Admin) APISession(r *http.Request) (cred store.Credential, csrf string, ok bool, err error) {
	for _, tok := range cookieValues(r.Header, SessionCookie) {
		sess, u, err := a.cfg.Store.CheckSession(tok, "")
		if err == nil {
			return store.Credential{User: u, SessionID: sess.ID}, csrfToken(tok), true, nil
		}
		if !deadSession(err) {
			return store.Credential{}, "", false, err
		}
	}
	return store.Credential{}, "", false, nil
}

// SameOrigin reports whether a state-changing request comes from a page of
// the host it is sent to, as the admin host's own forms require
// (sameOrigin).
func (a *Admin) SameOrigin(r *http.Request) bool { return a.sameOrigin(r) }

// Origin is the admin host's origin, https://<domain>[:port].
func (a *Admin) Origin() string { return a.base }
