// Package web is the admin host's web UI: the fleet in a browser. Pages are
// server-rendered html/template over the operations of internal/ops (the
// same checks and audit log as the admin commands and the REST API), with
// their stylesheet and a small script embedded in the binary: no build
// step, no CDN, since reflectors run on closed networks. Every page works
// without JavaScript for the basics; the script adds live status and copy
// buttons. Pages send a strict Content-Security-Policy (no inline script),
// X-Frame-Options: DENY and Referrer-Policy; every form carries the
// session's CSRF token and must come from a page of the admin host.
//
// The sign-in, TOTP and sign-out pages are package admin's, which owns
// sessions; this package serves the pages of a signed-in user. Texts and
// looks come from package brand.
package web

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/reflector-dev/reflector/admin/brand"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/webssh"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Config configures the web UI.
type Config struct {
	// Ops runs the operations. Required.
	Ops *ops.Service
	// Session returns who r's admin-host session cookie belongs to and the
	// session's CSRF token (admin.Admin.APISession). Required.
	Session func(r *http.Request) (cred store.Credential, csrf string, ok bool, err error)
	// SameOrigin reports whether a form post comes from a page of the
	// admin host (admin.Admin.SameOrigin). Required.
	SameOrigin func(r *http.Request) bool
	// DeviceURL is the https URL of a device's subdomain (its web UI).
	// Required.
	DeviceURL func(device string) string
	// VNC, if set, bridges the VNC viewer's WebSocket, which the web UI
	// has authenticated as cred (the admin session) and whose Origin it has
	// checked, to a stream to port of device (proxy.Proxy.ServeVNC; port 0
	// is the device's default). Nil leaves the viewer out.
	VNC func(w http.ResponseWriter, r *http.Request, cred store.Credential, device string, port uint16)
	// WebSSH runs the SSH terminal in the browser (ssh.go); nil turns it
	// off (serve --no-web-ssh): its page says so, and device pages offer no
	// terminal.
	WebSSH *webssh.Server
	// Brand gives the texts and looks; nil is brand.Default().
	Brand *brand.Brand
	// Logger; nil discards.
	Logger *slog.Logger
}

// Web serves the web UI's pages.
type Web struct {
	cfg   Config
	ops   *ops.Service
	brand *brand.Brand
	log   *slog.Logger
	mux   *http.ServeMux
	pages *pages
}

// New returns the web UI for cfg.
func New(cfg Config) (*Web, error) {
	if cfg.Ops == nil || cfg.Session == nil || cfg.SameOrigin == nil || cfg.DeviceURL == nil {
		return nil, errors.New("web config: Ops, Session, SameOrigin and DeviceURL are required")
	}
	if cfg.Brand == nil {
		cfg.Brand = brand.Default()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := loadPages(cfg.Brand)
	if err != nil {
		return nil, err
	}
	w := &Web{cfg: cfg, ops: cfg.Ops, brand: cfg.Brand, log: cfg.Logger, pages: p}
	w.mux = w.routes()
	return w, nil
}

// handler serves a page for a signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, v *visit) error

// visit is one request of a signed-in user.
type visit struct {
	caller ops.Caller
	csrf   string
}

func (w *Web) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /assets/{file}", w.serveAsset)
	mux.HandleFunc("GET /brand/{file}", w.serveBrand)
	if w.cfg.VNC != nil {
		mux.HandleFunc("GET /assets/novnc/{path...}", w.serveNoVNC)
		mux.HandleFunc("GET /devices/{id}/vnc/websocket", w.serveVNCSocket)
	}
	mux.HandleFunc("GET /assets/xterm/{file}", w.serveXTerm)
	mux.HandleFunc("GET /devices/{id}/ssh/websocket", w.sshSocket)
	mux.Handle("GET /{$}", w.page(w.dashboard))
	mux.Handle("GET /status.json", w.page(w.statusJSON))
	for pattern, h := range w.moreRoutes() {
		mux.Handle(pattern, w.page(h))
	}
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.pages.message(rw, r, http.StatusNotFound, "Not found", "There is no such page.")
	})
	return mux
}

// moreRoutes are the pages beyond the dashboard, by ServeMux pattern. Each
// part of the UI adds its own (devices.go, people.go, me.go, audit.go,
// ssh.go).
func (w *Web) moreRoutes() map[string]handler {
	routes := map[string]handler{}
	for _, part := range []map[string]handler{w.deviceRoutes(), w.peopleRoutes(), w.meRoutes(), w.auditRoutes(), w.vncRoutes(), w.sshRoutes()} {
		for p, h := range part {
			routes[p] = h
		}
	}
	return routes
}

// ServeHTTP serves the web UI.
func (w *Web) ServeHTTP(rw http.ResponseWriter, r *http.Request) { w.mux.ServeHTTP(rw, r) }

// page wraps a handler: the visitor must be signed in (else to the sign-in
// page, and back here after), and a form post must carry the session's
// CSRF token and come from a page of the admin host.
func (w *Web) page(h handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		cred, csrf, ok, err := w.cfg.Session(r)
		if err != nil {
			w.fail(rw, r, err)
			return
		}
		if !ok {
			next := r.URL.RequestURI()
			if r.Method != http.MethodGet || next == "/" {
				redirect(rw, "/login")
				return
			}
			redirect(rw, "/login?next="+url.QueryEscape(next))
			return
		}
		v := &visit{caller: ops.FromCredential(cred, tunnel.ClientAddr(r)), csrf: csrf}
		if r.Method == http.MethodPost {
			if err := w.checkForm(rw, r, v); err != nil {
				w.fail(rw, r, err)
				return
			}
		}
		if err := h(rw, r, v); err != nil {
			w.fail(rw, r, err)
		}
	})
}

// redirect answers 303 See Other to loc, a path of this host.
func redirect(rw http.ResponseWriter, loc string) {
	rw.Header().Set("Location", loc)
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusSeeOther)
}
