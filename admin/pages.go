package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
)

// The pages are a few server-rendered forms without script, so they work
// without JavaScript and under a strict Content-Security-Policy. The one
// stylesheet is inlined and allowed by its hash: no second request, and
// nothing for a device subdomain to serve in its place.

//go:embed pages
var pageFS embed.FS

var (
	pageTemplates = map[string]*template.Template{}
	styleCSS      template.CSS
	// contentSecurityPolicy allows the page's own origin and the inline
	// stylesheet, no script, no framing (X-Frame-Options says the same to
	// older browsers).
	contentSecurityPolicy string
)

func init() {
	css, err := pageFS.ReadFile("pages/style.css")
	if err != nil {
		panic(err)
	}
	styleCSS = template.CSS(css)
	sum := sha256.Sum256(css)
	contentSecurityPolicy = "default-src 'self'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; frame-ancestors 'none'; base-uri 'none'"
	for _, name := range []string{"login", "totp", "home", "logout", "message"} {
		pageTemplates[name] = template.Must(template.ParseFS(pageFS, "pages/layout.html", "pages/"+name+".html"))
	}
}

// page is the data of every page; each template uses the fields it needs.
type page struct {
	Title   string
	Message string // a one-line error above the content
	Style   template.CSS

	User    string // login, totp, home, logout
	Next    string // login, totp: where to go after
	Pending string // totp: the pending-login token
	Devices []deviceLink
	PAC     string
	Action  string // logout: where the button posts
	// message: a paragraph and a link
	Text     string
	Link     string
	LinkText string
}

type deviceLink struct {
	ID, Name, URL string
	// Status is "online since 15:04 (webtunnel)", "offline" or, without
	// a hub, "".
	Status string
	Online bool
}

// setPageHeaders sets what every reflector page carries: no framing, no
// caching (pages show who is signed in), no referrer beyond the origin.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// render writes the named page with status.
func (a *Admin) render(w http.ResponseWriter, status int, name string, p page) {
	p.Style = styleCSS
	var buf bytes.Buffer
	if err := pageTemplates[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		a.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// message renders a page of one paragraph and a link.
func (a *Admin) message(w http.ResponseWriter, status int, title, text, link, linkText string) {
	a.render(w, status, "message", page{Title: title, Text: text, Link: link, LinkText: linkText})
}

// redirect answers 303 See Other to loc, which the caller has checked.
func redirect(w http.ResponseWriter, loc string) {
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	if h.Get("Referrer-Policy") == "" {
		h.Set("Referrer-Policy", "same-origin")
	}
	w.WriteHeader(http.StatusSeeOther)
}
