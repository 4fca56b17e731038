package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Device subdomains. The admin host's session cookie is host-only, so a
// device subdomain never receives it. A browser without a session there is
// sent to the admin host's /auth/handoff, which, for a signed-in user
// allowed on the device, sends it back to the device's
// /.reflector/callback with a one-time code (60 s, bound to user and
// device); the callback turns the code into a session valid on that device
// alone, in a cookie of that host alone. The code is also bound to the
// browser: the device subdomain gives it a random state (StateCookie)
// before sending it off, the hand-off carries the state into the code, and
// the callback wants the same state back, so a code cannot be redeemed in
// a browser its maker sent it to.

// maxBearer bounds the X-Reflector-Authorization value.
const maxBearer = 1024

// serveHandoff hands a signed-in user's browser over to a device subdomain.
func (a *Admin) serveHandoff(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	_, u, ok, stale, err := a.session(r)
	if err != nil {
		a.internalError(w, "check session", err)
		return
	}
	if !ok {
		if stale {
			clearCookie(w, SessionCookie)
		}
		redirect(w, "/login?next="+url.QueryEscape(r.URL.RequestURI()))
		return
	}
	id := q.Get("device")
	d, err := a.cfg.Store.Device(id)
	switch {
	case !tunnel.ValidDeviceID(id) || errors.Is(err, store.ErrNotFound):
		// The id is not repeated: a page must not say what a link made up.
		a.message(w, http.StatusNotFound, "Unknown device", "There is no such device.", "/", "Your devices")
		return
	case err != nil:
		a.internalError(w, "look up device", err)
		return
	case d.Disabled:
		a.message(w, http.StatusForbidden, "Device disabled", "Device "+d.ID+" is disabled.", "/", "Your devices")
		return
	case !store.CanAccess(u, d):
		a.log.Info("hand-off refused: no access", "user", u.Name, "device", d.ID)
		a.message(w, http.StatusForbidden, "No access", "Device "+d.ID+" is not shared with you.", "/", "Your devices")
		return
	}
	state := q.Get("state")
	if !validState(state) {
		// Not started on the device subdomain (an old link, a bookmark):
		// start there, where the browser gets its state.
		redirect(w, a.deviceBase(d.ID)+pathOrRoot(q.Get("next")))
		return
	}
	now := a.now()
	code := a.handoffs.issue(handoff{user: u.Name, device: d.ID, state: state}, now, now.Add(a.handoffTTL))
	redirect(w, a.deviceBase(d.ID)+callbackPath+"?code="+code+"&next="+url.QueryEscape(pathOrRoot(q.Get("next"))))
}

// DeviceAuth decides who a request on device's subdomain comes from. It
// answers the reflector's own paths there (/.reflector/callback,
// /.reflector/logout) and unauthenticated requests itself — a redirect to
// the admin host's hand-off for browsers, 401 with a JSON body for programs
// — and then returns false. Otherwise it returns the credential (from the
// device's own session cookie or an X-Reflector-Authorization: Bearer
// token) with the reflector's cookie and header removed from r, so the
// device never sees them. Whether the credential may reach the device is
// the caller's check (store.Credential.Allows).
func (a *Admin) DeviceAuth(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool) {
	switch p := r.URL.Path; {
	case p == callbackPath:
		a.serveCallback(w, r, device)
		return store.Credential{}, false
	case p == deviceLogoutPath:
		a.serveDeviceLogout(w, r, device)
		return store.Credential{}, false
	case p == websockifyPath, IsNoVNC(r):
		// Served by the reflector after this authentication: noVNC's
		// bridge (proxy.ServeWebsockify, also at paths below the app's, as
		// the app resolves them) and its app (ServeNoVNC).
	case strings.HasPrefix(p, reservedPrefix) || p == strings.TrimSuffix(reservedPrefix, "/"):
		notFound(w, r)
		return store.Credential{}, false
	}
	cred, ok := a.deviceCredential(w, r, device)
	if ok {
		// Whichever authenticated the request, neither the header nor
		// our cookies go on to the device.
		r.Header.Del(AuthHeader)
		stripCookies(r.Header, DeviceCookie, SessionCookie, StateCookie)
	}
	return cred, ok
}

// acts reports whether a request may change something on the device: any
// method but GET, HEAD and OPTIONS, or a WebSocket upgrade (a GET whose
// connection then carries anything).
func acts(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return websocket.IsWebSocketUpgrade(r)
	}
	return true
}

// refuseCrossSite answers a request that would act with the user's device
// cookie but comes from a page of another host. Every device host is the
// same site as the others (SameSite=Lax sends the cookie along), so without
// this a device's page could drive another device as the user: a form
// POST, a fetch, a WebSocket. Programs send the bearer header instead and
// are not affected.
func (a *Admin) refuseCrossSite(w http.ResponseWriter, r *http.Request, device, user string) {
	client := tunnel.ClientAddr(r)
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = "Sec-Fetch-Site: " + r.Header.Get("Sec-Fetch-Site")
	}
	reason := fmt.Sprintf("refused: %s %s from another site or device page (%s)", r.Method, truncate(r.URL.Path, 200), truncate(origin, 200))
	a.cfg.Store.Audit(store.AuditEvent{Kind: store.AuditRequest, User: user, Device: device, Client: addrString(client), Reason: reason})
	a.log.Warn("cross-site request to a device refused", "device", device, "user", user, "client", client,
		"method", r.Method, "origin", r.Header.Get("Origin"), "fetch_site", r.Header.Get("Sec-Fetch-Site"))
	http.Error(w, "refused: this request comes from a page of another site or device, which may not act with your device session", http.StatusForbidden)
}

// truncate shortens s to n bytes for logs and the audit log.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// deviceCredential authenticates a device-subdomain request: a bearer
// token in AuthHeader if there is one (a wrong one is refused, whatever
// cookie comes with it), else the device's session cookie.
func (a *Admin) deviceCredential(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool) {
	client := tunnel.ClientAddr(r)
	if vals := r.Header.Values(AuthHeader); len(vals) > 0 {
		tok, ok := parseBearer(vals)
		if !ok {
			a.jsonError(w, http.StatusUnauthorized, "malformed "+AuthHeader+": want one Bearer token")
			return store.Credential{}, false
		}
		cred, err := a.cfg.Guard.Token(client, tok)
		if msg, ok := tunnel.RetryLater(w.Header(), err); ok {
			a.jsonError(w, http.StatusTooManyRequests, msg)
			return store.Credential{}, false
		}
		switch {
		case err == nil:
			return cred, true
		case errors.Is(err, store.ErrBadCredentials):
			a.log.Debug("device bearer token refused", "device", device, "client", client, "err", err)
			a.jsonError(w, http.StatusUnauthorized, "invalid token")
		default:
			a.log.Error("check bearer token", "device", device, "err", err)
			a.jsonError(w, http.StatusInternalServerError, "internal error")
		}
		return store.Credential{}, false
	}
	stale := false
	for _, tok := range cookieValues(r.Header, DeviceCookie) {
		sess, u, err := a.cfg.Store.CheckSession(tok, device)
		if err == nil {
			if acts(r) && !a.sameOrigin(r) {
				a.refuseCrossSite(w, r, device, u.Name)
				return store.Credential{}, false
			}
			return store.Credential{User: u, SessionID: sess.ID}, true
		}
		if !deadSession(err) {
			a.log.Error("check device session", "device", device, "err", err)
			a.jsonError(w, http.StatusInternalServerError, "internal error")
			return store.Credential{}, false
		}
		stale = true
	}
	if stale {
		clearCookie(w, DeviceCookie)
	}
	if isBrowserNavigation(r) {
		state := handoffState(w, r)
		redirect(w, a.base+"/auth/handoff?device="+url.QueryEscape(device)+"&state="+state+
			"&next="+url.QueryEscape(pathOrRoot(r.URL.RequestURI())))
		return store.Credential{}, false
	}
	a.jsonError(w, http.StatusUnauthorized, "authentication required")
	return store.Credential{}, false
}

// isBrowserNavigation reports whether r looks like a browser loading a
// page, which can follow a redirect to the login; scripts and programs get
// a 401 they can act on instead.
func isBrowserNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}

// parseBearer returns the token of the one "Bearer <token>" value.
func parseBearer(vals []string) (string, bool) {
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxBearer {
		return "", false
	}
	return tok, true
}

// jsonError answers a program on a device subdomain.
func (a *Admin) jsonError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="reflector"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
		Login string `json:"login"`
	}{msg, a.base + "/login"})
}

// serveCallback redeems a hand-off code for a device session.
func (a *Admin) serveCallback(w http.ResponseWriter, r *http.Request, device string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	next := pathOrRoot(q.Get("next"))
	client := tunnel.ClientAddr(r)
	h, ok := a.handoffs.redeem(q.Get("code"), a.now())
	if !ok || h.device != device {
		// A code is tried once, here or on another device, and is gone.
		a.log.Info("hand-off code refused", "device", device, "client", client)
		a.message(w, http.StatusForbidden, "Sign-in link not valid",
			"This sign-in link has been used already, has expired, or is for another device.", next, "Start again")
		return
	}
	if !hasState(r, h.state) {
		// Somebody else's hand-off, sent to this browser (a link in a
		// message): it would sign this browser in as them.
		a.log.Warn("hand-off code from another browser refused", "user", h.user, "device", device, "client", client)
		a.cfg.Store.Audit(store.AuditEvent{Kind: store.AuditLogin, User: h.user, Device: device,
			Client: addrString(client), Reason: "device web session: hand-off from another browser"})
		a.message(w, http.StatusForbidden, "Sign-in link not valid",
			"This sign-in link was started in another browser.", next, "Start again")
		return
	}
	for _, old := range cookieValues(r.Header, DeviceCookie) {
		if err := a.cfg.Store.DeleteSession(old); err != nil {
			a.log.Warn("end replaced device session", "device", device, "err", err)
		}
	}
	tok, sess, err := a.cfg.Store.CreateSession(h.user, device)
	if err != nil {
		a.internalError(w, "create device session", err)
		return
	}
	a.log.Info("device session", "user", h.user, "device", device, "session", sess.ID, "client", client)
	a.cfg.Store.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: true, User: h.user, Device: device,
		Client: addrString(client), Reason: "device web session " + sess.ID})
	setCookie(w, DeviceCookie, tok)
	// The callback URL holds the code: keep it out of any Referer.
	w.Header().Set("Referrer-Policy", "no-referrer")
	redirect(w, next)
}

// serveDeviceLogout ends the device session (POST) or offers to (GET).
func (a *Admin) serveDeviceLogout(w http.ResponseWriter, r *http.Request, device string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a.render(w, http.StatusOK, "logout", page{Title: "Sign out of " + device, Action: deviceLogoutPath})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !a.sameOrigin(r) {
		a.crossOrigin(w, r)
		return
	}
	for _, tok := range cookieValues(r.Header, DeviceCookie) {
		if err := a.cfg.Store.DeleteSession(tok); err != nil {
			a.internalError(w, "end device session", err)
			return
		}
	}
	clearCookie(w, DeviceCookie)
	a.message(w, http.StatusOK, "Signed out", "You are signed out of "+device+".", a.base+"/", "Reflector")
}
