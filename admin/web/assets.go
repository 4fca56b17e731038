package web

import (
	"net/http"
	"strings"
)

// serveAsset serves the embedded stylesheet and script. They change only
// with the binary; a day's caching is safe with the version in the query.
func (w *Web) serveAsset(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	data, err := files.ReadFile("assets/" + name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(rw, r)
		return
	}
	ctype := "text/plain; charset=utf-8"
	switch {
	case strings.HasSuffix(name, ".css"):
		ctype = "text/css; charset=utf-8"
	case strings.HasSuffix(name, ".js"):
		ctype = "text/javascript; charset=utf-8"
	}
	h := rw.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.Write(data)
}

// serveBrand serves the brand's stylesheet, logo and favicon.
func (w *Web) serveBrand(rw http.ResponseWriter, r *http.Request) {
	var data []byte
	var ctype string
	switch r.PathValue("file") {
	case "style.css":
		data, ctype = w.brand.Style, "text/css; charset=utf-8"
	case "logo":
		data, ctype = w.brand.Logo, w.brand.LogoType
	case "favicon":
		data, ctype = w.brand.Favicon, w.brand.FaviconType
	}
	if data == nil {
		http.NotFound(rw, r)
		return
	}
	h := rw.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	// An SVG logo is an image, never a document that could run script.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	rw.Write(data)
}
