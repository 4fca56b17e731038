package admin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Login on the admin host: POST /login checks the password; a user with
// TOTP gets a second form carrying a pending-login token and POSTs the code
// to /login/totp. Either ends in a session cookie and a 303 to next.

// session returns the admin-host session the request's cookie names. ok is
// false without a live one; stale reports a cookie naming a dead session,
// which the caller may clear. err is a store fault.
func (a *Admin) session(r *http.Request) (sess store.Session, u store.User, ok, stale bool, err error) {
	for _, tok := range cookieValues(r.Header, SessionCookie) {
		sess, u, err = a.cfg.Store.CheckSession(tok, "")
		if err == nil {
			return sess, u, true, false, nil
		}
		if !deadSession(err) {
			return store.Session{}, store.User{}, false, false, err
		}
		stale = true
	}
	return store.Session{}, store.User{}, false, stale, nil
}

// deadSession reports whether a CheckSession error means the token is no
// (longer a) good session, rather than that the store failed.
func deadSession(err error) bool {
	return errors.Is(err, store.ErrBadCredentials) || errors.Is(err, store.ErrExpired) || errors.Is(err, store.ErrNotFound)
}

func (a *Admin) internalError(w http.ResponseWriter, what string, err error) {
	a.log.Error(what, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// serveHome is the start page: who is signed in, their devices, the PAC
// file.
func (a *Admin) serveHome(w http.ResponseWriter, r *http.Request) {
	_, u, ok, stale, err := a.session(r)
	if err != nil {
		a.internalError(w, "check session", err)
		return
	}
	if !ok {
		if stale {
			clearCookie(w, SessionCookie)
		}
		redirect(w, "/login")
		return
	}
	devices, err := a.cfg.Store.Devices()
	if err != nil {
		a.internalError(w, "list devices", err)
		return
	}
	p := page{Title: a.text("home.title"), User: u.Name, PAC: a.base + "/proxy.pac"}
	for _, d := range devices {
		if !d.Disabled && store.CanAccess(u, d) {
			p.Devices = append(p.Devices, a.deviceLink(d))
		}
	}
	a.render(w, http.StatusOK, "home", p)
}

// serveLoginForm shows the login form, or sends a signed-in user on.
func (a *Admin) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	next := a.loginNext(r.URL.Query().Get("next"))
	_, _, ok, stale, err := a.session(r)
	if err != nil {
		a.internalError(w, "check session", err)
		return
	}
	if ok {
		redirect(w, next)
		return
	}
	if stale {
		clearCookie(w, SessionCookie)
	}
	a.render(w, http.StatusOK, "login", page{Title: a.text("signIn.title"), Next: next})
}

// serveLogin checks the password.
func (a *Admin) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !a.sameOrigin(r) {
		a.crossOrigin(w, r)
		return
	}
	if status, msg := readForm(w, r); status != 0 {
		a.message(w, status, a.text("signIn.formRefused"), msg, a.base+"/login", a.text("signIn.title"))
		return
	}
	// PostFormValue reads the body only: a password in a URL would end up
	// in logs and history.
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	next := a.loginNext(r.PostFormValue("next"))
	client := tunnel.ClientAddr(r)
	u, err := a.cfg.Guard.Password(r.Context(), client, name, password)
	if err != nil {
		a.loginFailed(w, "login", page{Title: a.text("signIn.title"), User: name, Next: next}, client, err)
		return
	}
	if u.TOTP {
		now := a.now()
		expires := now.Add(a.pendingTTL)
		tok := a.pending.issue(pendingLogin{user: u.Name, expires: expires}, now, expires)
		a.render(w, http.StatusOK, "totp", page{Title: a.text("totp.title"), User: u.Name, Next: next, Pending: tok})
		return
	}
	a.startSession(w, r, u.Name, next)
}

// serveTOTP checks the code of a pending login.
func (a *Admin) serveTOTP(w http.ResponseWriter, r *http.Request) {
	if !a.sameOrigin(r) {
		a.crossOrigin(w, r)
		return
	}
	if status, msg := readForm(w, r); status != 0 {
		a.message(w, status, a.text("signIn.formRefused"), msg, a.base+"/login", a.text("signIn.title"))
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	next := a.loginNext(r.PostFormValue("next"))
	now := a.now()
	pl, ok := a.pending.redeem(r.PostFormValue("pending"), now)
	if !ok {
		a.render(w, http.StatusUnauthorized, "login", page{Title: a.text("signIn.title"), Next: next,
			Message: a.text("signIn.expired")})
		return
	}
	client := tunnel.ClientAddr(r)
	if err := a.cfg.Guard.TOTP(r.Context(), client, pl.user, code); err != nil {
		// The token was single use; the retry gets a new one that ends when
		// the first would have. Wrong codes are counted by the guard.
		p := page{Title: a.text("totp.title"), User: pl.user, Next: next, Pending: a.pending.issue(pl, now, pl.expires)}
		a.loginFailed(w, "totp", p, client, err)
		return
	}
	a.startSession(w, r, pl.user, next)
}

// bodyTimeout bounds the reading of a form anybody may post (/login,
// /login/totp, the token endpoint): without it, a client that announces a
// body and sends none holds its connection and a goroutine for as long as
// it likes (issue 15, item 7). 16 KiB in 10 s is 1.6 KiB/s. A variable for
// the tests.
var bodyTimeout = 10 * time.Second

// readForm reads a posted form of at most maxForm bytes (url-encoded or
// multipart) within bodyTimeout. It returns 0, or the status and reason to
// answer: 408 when the body did not arrive in time, 413 when it is too
// large, 400 when it is not a form. After a failure the connection is
// closed once the answer is written: its read side is spent.
func readForm(w http.ResponseWriter, r *http.Request) (int, string) {
	rc := http.NewResponseController(w)
	// ErrNotSupported (a ResponseRecorder) reads without a deadline.
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	err := r.ParseForm() // ParseMultipartForm alone drops its error for a url-encoded body
	if err == nil {
		if err = r.ParseMultipartForm(maxForm); errors.Is(err, http.ErrNotMultipart) {
			err = nil
		}
	}
	if err == nil {
		// The form is read; what follows (argon2id, which may queue) is
		// not the client's to hurry, and the server sets the next
		// request's deadline itself.
		rc.SetReadDeadline(time.Time{})
		return 0, ""
	}
	w.Header().Set("Connection", "close")
	var ne net.Error
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, fmt.Sprintf("The form did not arrive within %v. Please send it again.", bodyTimeout)
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "The form is too large."
	}
	return http.StatusBadRequest, "The form could not be read."
}

// loginFailed answers a refused password or code with the form again.
func (a *Admin) loginFailed(w http.ResponseWriter, form string, p page, client netip.Addr, err error) {
	if _, ok := tunnel.RetryLater(w.Header(), err); ok {
		p.Message = a.text("signIn.tooMany", "seconds", w.Header().Get("Retry-After"))
		a.render(w, http.StatusTooManyRequests, form, p)
		return
	}
	switch {
	case errors.Is(err, store.ErrBadCredentials):
		a.log.Debug("web login refused", "user", p.User, "client", client, "err", err)
		p.Message = a.text("signIn.failed")
		if form == "totp" {
			p.Message = a.text("totp.failed")
		}
		a.render(w, http.StatusUnauthorized, form, p)
	default:
		a.internalError(w, "web login", err)
	}
}

// startSession makes an admin-host session for user, sets its cookie and
// sends the browser to next. A session the browser already held is ended:
// a login never adds to a session somebody else may have planted.
func (a *Admin) startSession(w http.ResponseWriter, r *http.Request, user, next string) {
	for _, old := range cookieValues(r.Header, SessionCookie) {
		if err := a.cfg.Store.DeleteSession(old); err != nil {
			a.log.Warn("end replaced session", "err", err)
		}
	}
	tok, sess, err := a.cfg.Store.CreateSession(user, "")
	if err != nil {
		a.internalError(w, "create session", err)
		return
	}
	a.log.Info("web login", "user", user, "session", sess.ID, "client", tunnel.ClientAddr(r))
	setCookie(w, SessionCookie, tok)
	redirect(w, next)
}

// serveLogoutForm shows a sign-out button (a GET must not sign anybody
// out: links and prefetchers follow GETs).
func (a *Admin) serveLogoutForm(w http.ResponseWriter, r *http.Request) {
	_, u, _, _, err := a.session(r)
	if err != nil {
		a.internalError(w, "check session", err)
		return
	}
	a.render(w, http.StatusOK, "logout", page{Title: a.text("signOut.title"), User: u.Name, Action: "/logout"})
}

// serveLogout ends the admin-host session and shows the login form.
func (a *Admin) serveLogout(w http.ResponseWriter, r *http.Request) {
	if !a.sameOrigin(r) {
		a.crossOrigin(w, r)
		return
	}
	for _, tok := range cookieValues(r.Header, SessionCookie) {
		if err := a.cfg.Store.DeleteSession(tok); err != nil {
			a.internalError(w, "end session", err)
			return
		}
	}
	clearCookie(w, SessionCookie)
	redirect(w, "/login")
}

// sameOrigin reports whether a state-changing request comes from a page of
// the host it is sent to. SameSite=Lax is not enough here: every device
// subdomain is the same site as the admin host, and its pages are the
// device's, so they could post a login form (logging the user in as
// somebody else) or sign the user out. Browsers name the origin of every
// POST (Sec-Fetch-Site, Origin, failing those Referer); a request naming
// none comes from a program, not from a page, and is let through.
func (a *Admin) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if origin := r.Header.Values("Origin"); len(origin) > 0 {
		return len(origin) == 1 && sameHost(origin[0], r.Host)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return sameHost(ref, r.Host)
	}
	return true
}

// sameHost reports whether the https URL or origin u is on host (the
// request's Host, with its port).
func sameHost(u, host string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.User != nil {
		return false
	}
	return strings.EqualFold(strings.TrimSuffix(p.Host, ":443"), strings.TrimSuffix(host, ":443"))
}

func (a *Admin) crossOrigin(w http.ResponseWriter, r *http.Request) {
	a.log.Warn("cross-origin form post refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"),
		"client", tunnel.ClientAddr(r))
	a.message(w, http.StatusForbidden, a.text("signIn.refused"), a.text("signIn.crossOrigin"), a.base+"/login", a.text("signIn.title"))
}

// deviceLink is a device's line on the start page, with its status when
// the hub is known.
func (a *Admin) deviceLink(d store.Device) deviceLink {
	l := deviceLink{ID: d.ID, Name: d.Name, URL: a.deviceBase(d.ID) + "/"}
	if a.cfg.Hub == nil {
		return l
	}
	st, ok := a.cfg.Hub.Status(d.ID)
	if !ok {
		l.Status = "offline"
		return l
	}
	l.Online = true
	l.Status = fmt.Sprintf("online since %s (%s)", st.ConnectedSince.UTC().Format("2006-01-02 15:04 UTC"), st.Kind)
	return l
}
