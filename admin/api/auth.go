package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// CSRFHeader carries the session's CSRF token on unsafe requests
// authenticated by the session cookie (admin.CSRFHeader).
const CSRFHeader = "X-CSRF-Token"

// Authentication failures, each its own answer (errors.go).
var (
	errNoCredentials = errors.New("authentication required: send Authorization: Bearer <API token>, or sign in")
	errBadToken      = errors.New("bad or expired API token")
	errCSRF          = errors.New("missing or wrong " + CSRFHeader + ": a request that changes something with the session cookie must echo the session's CSRF token (GET /api/v1/me shows it)")
	errCrossOrigin   = errors.New("cross-origin request refused: with the session cookie, a request that changes something must come from a page of the admin host")
)

// How a caller authenticated, as GET /me tells.
const (
	authToken   = "token"
	authSession = "session"
)

// authenticated is a caller with how it authenticated; the CSRF token is
// set for a session.
type authenticated struct {
	how  string
	csrf string
}

// callerKey keys the authenticated value in a caller's request context.
type callerKey struct{}

// authenticate returns who r is: the API token of its Authorization
// header, else its admin-host session cookie. A request with neither, or
// with a bad one, is refused: the API has no anonymous callers except for
// its public routes.
func (a *API) authenticate(r *http.Request) (ops.Caller, authenticated, error) {
	client := tunnel.ClientAddr(r)
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		token, ok := bearer(h)
		if !ok {
			return ops.Caller{}, authenticated{}, errBadToken
		}
		cred, err := a.cfg.Guard.Token(client, token)
		if err != nil {
			if errors.Is(err, store.ErrBadCredentials) || errors.Is(err, store.ErrExpired) {
				return ops.Caller{}, authenticated{}, errBadToken
			}
			return ops.Caller{}, authenticated{}, err // a lockout (429) or a store fault
		}
		return ops.FromCredential(cred, client), authenticated{how: authToken}, nil
	}
	if a.cfg.Session == nil {
		return ops.Caller{}, authenticated{}, errNoCredentials
	}
	cred, csrf, ok, err := a.cfg.Session(r)
	switch {
	case err != nil:
		return ops.Caller{}, authenticated{}, err
	case !ok:
		return ops.Caller{}, authenticated{}, errNoCredentials
	}
	if !safeMethod(r.Method) {
		if origin := r.Header.Values("Origin"); len(origin) != 1 || !strings.EqualFold(origin[0], a.cfg.Origin) {
			return ops.Caller{}, authenticated{}, errCrossOrigin
		}
		if got := r.Header.Get(CSRFHeader); subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
			return ops.Caller{}, authenticated{}, errCSRF
		}
	}
	return ops.FromCredential(cred, client), authenticated{how: authSession, csrf: csrf}, nil
}

// bearer returns the token of the one Authorization header "Bearer
// <token>" (the scheme in any case, RFC 9110 §11.1).
func bearer(h []string) (string, bool) {
	if len(h) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !equalFoldASCII(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// equalFoldASCII is strings.EqualFold for ASCII only: EqualFold also folds
// "ſ" to "s" and "K" (Kelvin) to "k", which a header token must not match.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// safeMethod reports whether method changes nothing (RFC 9110 §9.2.1).
func safeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// authenticatedOf is how the caller of r authenticated (dispatch puts it in
// the request's context).
func authenticatedOf(r *http.Request) authenticated {
	v, _ := r.Context().Value(callerKey{}).(authenticated)
	return v
}
