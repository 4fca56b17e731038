// Package api is the reflector's REST API: JSON under /api/v1 on the admin
// host, over the operations of internal/ops, so that it does what the
// admin commands and the web UI do, with the same checks and the same
// audit log (the caller as actor). It is described by the OpenAPI 3.1
// document openapi.json, kept here as the source of truth, served at
// /api/v1/openapi.json and checked in the tests against the routes served
// and every response they see. Beside /api/v1 it serves the two
// macchina.io REMOTE paths integrators' scripts already call:
// /my-devices/api/devices (a device listing) and /my-devices/api/provision
// (a WebTunnelAgent.properties for a device).
//
// A request authenticates with an API token (Authorization: Bearer rfl_…)
// or with the admin host's session cookie; with the cookie, a request that
// changes something must also carry the session's CSRF token
// (X-CSRF-Token) and come from a page of the admin host (Origin). Errors
// are {"error": {"code", "message", "field"}} with the status that fits.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// Prefix is where the API lives on the admin host.
const Prefix = "/api/v1"

// Paths outside Prefix that the API serves, for macchina.io REMOTE's
// scripts and provisioning tools.
const (
	CompatDevicesPath   = "/my-devices/api/devices"
	CompatProvisionPath = "/my-devices/api/provision"
)

// Config configures an API.
type Config struct {
	// Ops runs the operations. Required.
	Ops *ops.Service
	// Guard checks bearer tokens, throttled and audited. Required.
	Guard *auth.Guard
	// Session returns who r's admin-host session cookie belongs to and the
	// session's CSRF token (admin.Admin.APISession); nil accepts no
	// cookies.
	Session func(r *http.Request) (cred store.Credential, csrf string, ok bool, err error)
	// Origin is the admin host's origin, https://<domain>[:port]: the only
	// Origin accepted on unsafe requests authenticated by the cookie.
	Origin string
	// Logger; nil discards.
	Logger *slog.Logger
}

// API serves the REST API. Mount it for the admin host's paths under
// Prefix and the two compatibility paths (Handles says which).
type API struct {
	cfg Config
	ops *ops.Service
	log *slog.Logger
	mux *http.ServeMux
}

// New returns an API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.Ops == nil || cfg.Guard == nil {
		return nil, errors.New("api config: Ops and Guard are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, ops: cfg.Ops, log: cfg.Logger}
	a.mux = a.buildMux()
	return a, nil
}

// Handles reports whether path is the API's: under Prefix, or one of the
// compatibility paths.
func Handles(path string) bool {
	return path == Prefix || strings.HasPrefix(path, Prefix+"/") ||
		path == CompatDevicesPath || path == CompatProvisionPath
}

// ServeHTTP serves an API request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	a.mux.ServeHTTP(w, r)
}

// handler serves one route for an authenticated caller. It writes its
// answer itself on success and returns an error otherwise, which becomes
// the error answer (writeError).
type handler func(w http.ResponseWriter, r *http.Request, c ops.Caller) error

// route is one method and path the API serves. Paths are written as in the
// OpenAPI document ({id} for a parameter), which is also how net/http's
// ServeMux reads them.
type route struct {
	method, path string
	public       bool // served without authentication
	serve        handler
}

// routes is every route the API serves. The OpenAPI document must list
// exactly these (TestOpenAPIDocumentsEveryRoute).
func (a *API) routes() []route {
	return slices.Concat(
		[]route{{method: http.MethodGet, path: Prefix + "/openapi.json", public: true, serve: serveOpenAPI}},
		a.meRoutes(),
		a.deviceRoutes(),
		a.userRoutes(),
		a.groupRoutes(),
		a.tokenRoutes(),
		a.enrollRoutes(),
		a.auditRoutes(),
		a.compatRoutes(),
	)
}

// buildMux registers the routes, one handler per path that dispatches on
// the method, so that a wrong method gets the API's own JSON 405 with
// Allow, and any other path under Prefix the API's JSON 404.
func (a *API) buildMux() *http.ServeMux {
	byPath := make(map[string][]route)
	var paths []string
	for _, rt := range a.routes() {
		if _, ok := byPath[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.Handle(p, a.dispatch(byPath[p]))
	}
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, a.log, errNoRoute)
	}
	mux.HandleFunc(Prefix+"/", notFound)
	mux.HandleFunc(Prefix, notFound)
	return mux
}

// dispatch serves the routes of one path.
func (a *API) dispatch(rts []route) http.Handler {
	allow := make([]string, 0, len(rts)+1)
	for _, rt := range rts {
		allow = append(allow, rt.method)
		if rt.method == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	allowed := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet // the server sends the headers and drops the body
		}
		i := slices.IndexFunc(rts, func(rt route) bool { return rt.method == method })
		if i < 0 {
			w.Header().Set("Allow", allowed)
			writeError(w, r, a.log, errMethod)
			return
		}
		rt := rts[i]
		var c ops.Caller
		if !rt.public {
			var (
				how authenticated
				err error
			)
			if c, how, err = a.authenticate(r); err != nil {
				writeError(w, r, a.log, err)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), callerKey{}, how))
		}
		if err := rt.serve(w, r, c); err != nil {
			writeError(w, r, a.log, err)
		}
	})
}

// ctx is the request's context; a short name for handlers.
func ctx(r *http.Request) context.Context { return r.Context() }
