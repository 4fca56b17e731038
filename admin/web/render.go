package web

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/admin/brand"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

//go:embed templates assets
var files embed.FS

// contentSecurityPolicy: our own origin only; no inline script or style;
// images may be data: URLs (the TOTP QR code); no framing; forms post only
// here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// styleNonceCSP is the CSP of a page whose script adds <style> elements:
// xterm.js measures and themes the terminal with them, and with style
// attributes for 24-bit colours (xtermjs/xterm.js#4445). Script stays
// 'self' alone; <style> elements need the page's nonce, which ssh.js
// stamps on the ones xterm.js makes; style attributes, which can neither
// run script nor load from elsewhere (img-src), are allowed.
func styleNonceCSP(nonce string) string {
	return strings.Replace(contentSecurityPolicy, "style-src 'self';",
		"style-src 'self' 'nonce-"+nonce+"'; style-src-elem 'self' 'nonce-"+nonce+"'; style-src-attr 'unsafe-inline';", 1)
}

// setPageHeaders sets what every page carries: no framing, no caching
// (pages show who is signed in), no referrer beyond the origin.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// pages are the parsed templates: each page file with the layout.
type pages struct {
	brand  *brand.Brand
	byName map[string]*template.Template
}

func loadPages(b *brand.Brand) (*pages, error) {
	funcs := template.FuncMap{
		"t":        b.Text,
		"product":  b.ProductName,
		"dateTime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"ago":      ago,
		"bytes":    ops.ByteCount,
		"join":     strings.Join,
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{brand: b, byName: map[string]*template.Template{}}
	for _, f := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("page %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// view is what every page's template gets: the visitor, the navigation,
// and the page's own data.
type view struct {
	Title   string
	Nav     string // the navigation entry to mark: devices, people, keys, audit, me
	User    string
	Admin   bool
	CSRF    string
	Notice  string // a one-line success message
	Error   string // a one-line error above the content
	Logo    bool
	Style   bool // the brand has a stylesheet
	Favicon bool
	Data    any
	// StyleNonce, when set, is allowed on <style> elements by the page's
	// CSP: the SSH terminal's, whose xterm.js makes them (ssh.go).
	StyleNonce string
}

// render writes page name with status.
func (w *Web) render(rw http.ResponseWriter, status int, name string, v *visit, pv view) {
	if v != nil {
		pv.User, pv.Admin, pv.CSRF = v.caller.User.Name, v.caller.Admin(), v.csrf
	}
	w.pages.write(rw, status, name, pv)
}

func (p *pages) write(rw http.ResponseWriter, status int, name string, pv view) {
	pv.Logo, pv.Style, pv.Favicon = p.brand.Logo != nil, p.brand.Style != nil, p.brand.Favicon != nil
	t, ok := p.byName[name]
	var buf bytes.Buffer
	if !ok {
		http.Error(rw, "internal error: no page "+name, http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", pv); err != nil {
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(rw.Header())
	if pv.StyleNonce != "" {
		rw.Header().Set("Content-Security-Policy", styleNonceCSP(pv.StyleNonce))
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

// message writes a page of one paragraph.
func (p *pages) message(rw http.ResponseWriter, r *http.Request, status int, title, text string) {
	p.write(rw, status, "message", view{Title: title, Data: text})
}

// Form errors.
var (
	errCSRF        = errors.New("this form has expired or was sent from another page; please try again")
	errCrossOrigin = errors.New("this form was sent from another site")
	errForm        = errors.New("the form could not be read")
)

// maxForm bounds a form's body.
const maxForm = 64 << 10

// checkForm reads a posted form and checks its CSRF token and origin.
func (w *Web) checkForm(rw http.ResponseWriter, r *http.Request, v *visit) error {
	r.Body = http.MaxBytesReader(rw, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return errForm
	}
	if !w.cfg.SameOrigin(r) {
		return errCrossOrigin
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(v.csrf)) != 1 {
		return errCSRF
	}
	return nil
}

// fail answers a failed request with a page that says why, with the status
// that fits: the operations' errors carry their kind (ErrForbidden, the
// store's sentinels); anything else is logged and shown as an internal
// error.
func (w *Web) fail(rw http.ResponseWriter, r *http.Request, err error) {
	status, title := http.StatusInternalServerError, "Something went wrong"
	msg := err.Error()
	switch {
	case errors.Is(err, errCSRF), errors.Is(err, errCrossOrigin), errors.Is(err, ops.ErrForbidden):
		status, title = http.StatusForbidden, "Not allowed"
	case errors.Is(err, errForm):
		status, title = http.StatusBadRequest, "Bad form"
	case errors.Is(err, store.ErrNotFound):
		status, title = http.StatusNotFound, "Not found"
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotEmpty),
		errors.Is(err, store.ErrQuota):
		status, title = http.StatusBadRequest, "Not done"
	default:
		w.log.Error("web page failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "The reflector could not do this; its log says why."
	}
	w.pages.message(rw, r, status, title, msg)
}

// fieldError is the input field a failed operation names, and its message,
// for forms that show errors next to the field; ok is false for errors of
// no field.
func fieldError(err error) (field, msg string, ok bool) {
	var fe *store.FieldError
	if errors.As(err, &fe) {
		return fe.Field, err.Error(), true
	}
	return "", "", false
}

// ago says how long ago t was, roughly: "3 min ago".
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
