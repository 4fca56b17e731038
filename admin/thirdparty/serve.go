package thirdparty

import (
	"bytes"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// contentTypes are the types of the files vendored here, by extension: a
// fixed table rather than the system's mime.types, so that a module script
// is text/javascript on every machine (browsers refuse a module of another
// type, and nosniff makes them strict about the rest).
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".ttf":   "font/ttf",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".mp3":   "audio/mpeg",
	".oga":   "audio/ogg",
	".txt":   "text/plain; charset=utf-8",
	".md":    "text/plain; charset=utf-8",
}

// ServeFile serves file name of fsys (one of this package's trees) with its
// content type, nosniff and a day's caching (the files change only with the
// binary). A name that is not a file, or of a type not in the table, is
// 404. The caller sets any Content-Security-Policy.
func ServeFile(w http.ResponseWriter, r *http.Request, fsys fs.FS, name string) {
	ctype, ok := contentTypes[path.Ext(name)]
	if !ok || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}
