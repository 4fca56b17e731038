package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"strings"

	"github.com/reflector-dev/reflector/admin/brand"
)

// The pages are a few server-rendered forms without script, so they work
// without JavaScript and under a strict Content-Security-Policy. Our
// stylesheet is inlined and allowed by its hash: no second request, and
// nothing for a device subdomain to serve in its place. The brand's texts
// fill them; its stylesheet, logo and favicon are linked from the admin
// host (package web serves /brand/), by absolute URL, since some of these
// pages are shown on a device subdomain.

//go:embed pages
var pageFS embed.FS

var (
	styleCSS template.CSS
	// styleHash is the CSP source of the inline stylesheet.
	styleHash string
)

func init() {
	css, err := pageFS.ReadFile("pages/style.css")
	if err != nil {
		panic(err)
	}
	styleCSS = template.CSS(css)
	sum := sha256.Sum256(css)
	styleHash = "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// pageNames are the templates of pages/, each with the layout.
var pageNames = []string{"login", "totp", "home", "logout", "message"}

// parsePages parses the pages with b's texts.
func parsePages(b *brand.Brand) (map[string]*template.Template, error) {
	funcs := template.FuncMap{"t": b.Text, "product": b.ProductName}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(pageFS, "pages/layout.html", "pages/"+name+".html")
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// pagePolicy is the pages' Content-Security-Policy: the page's own origin,
// the inline stylesheet by its hash and the brand's files from the admin
// host (origin), no script, no framing (X-Frame-Options says the same to
// older browsers).
func pagePolicy(origin string) string {
	return "default-src 'self'; style-src 'self' " + origin + " " + styleHash + "; img-src 'self' data: " + origin +
		"; frame-ancestors 'none'; base-uri 'none'"
}

// page is the data of every page; each template uses the fields it needs.
type page struct {
	Title   string
	Message string // a one-line error above the content
	Style   template.CSS
	// The brand's files: URLs on the admin host, "" for none.
	BrandStyle, Logo, Favicon string

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
func (a *Admin) setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", a.csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// render writes the named page with status.
func (a *Admin) render(w http.ResponseWriter, status int, name string, p page) {
	p.Style = styleCSS
	if a.cfg.Web != nil { // package web serves /brand/
		if a.brand.Style != nil {
			p.BrandStyle = a.base + "/brand/style.css"
		}
		if a.brand.Logo != nil {
			p.Logo = a.base + "/brand/logo"
		}
		if a.brand.Favicon != nil {
			p.Favicon = a.base + "/brand/favicon"
		}
	}
	var buf bytes.Buffer
	if err := a.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		a.log.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	a.setPageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// message renders a page of one paragraph and a link.
func (a *Admin) message(w http.ResponseWriter, status int, title, text, link, linkText string) {
	a.render(w, status, "message", page{Title: title, Text: text, Link: link, LinkText: linkText})
}

// text is the brand's text of key, with each {name} of vars replaced by
// the value that follows it.
func (a *Admin) text(key string, vars ...string) string {
	s := a.brand.Text(key)
	for i := 0; i+1 < len(vars); i += 2 {
		s = strings.ReplaceAll(s, "{"+vars[i]+"}", vars[i+1])
	}
	return s
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
