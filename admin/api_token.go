package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// POST /my-devices/api/token is macchina.io REMOTE's token endpoint, which
// its remote-login tool calls (issue 9): a form of username, password,
// application and, for a user with TOTP, totp, answered with a JSON
// {"token", "expires"}. The token is an ordinary API token of ours, named
// after the application, good for apiTokenTTL.
//
// The endpoint is for programs, so it skips the admin forms' same-origin
// check: it sets no cookie and reads none, so a page elsewhere that posts to
// it gains nothing (it cannot read the answer, and a user's password is
// worth more than the token it would make). Its guesses count against the
// same throttle as every other login.

const (
	apiTokenPath = "/my-devices/api/token"
	// apiTokenTTL is how long a remote-login token lives.
	apiTokenTTL = 24 * time.Hour
	// apiTokenAppMax bounds the application's part of a token's name,
	// leaving room for the suffix within the store's 64 characters.
	apiTokenAppMax = 48
	// apiTokenDefaultApp names the token when the form names no
	// application (remote-login sends "WebTunnelLogin").
	apiTokenDefaultApp = "remote-login"
)

// apiTokenReply is the body of a successful answer.
type apiTokenReply struct {
	Token   string `json:"token"`
	Expires int64  `json:"expires"` // Unix seconds
}

// serveAPIToken checks a user's password (and TOTP code) and makes an API
// token for them.
func (a *Admin) serveAPIToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		apiError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if status, msg := readForm(w, r); status != 0 {
		apiError(w, status, msg)
		return
	}
	// PostFormValue reads the body only: a password in a URL would end up
	// in logs.
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	code := strings.TrimSpace(r.PostFormValue("totp"))
	app := tokenApp(r.PostFormValue("application"))
	client := tunnel.ClientAddr(r)

	u, err := a.cfg.Guard.Password(r.Context(), client, name, password)
	if err != nil {
		a.apiLoginFailed(w, name, client, err)
		return
	}
	if u.TOTP {
		if code == "" {
			// remote-login asks for "One-Time Password:" on this header
			// and sends the form again with totp added.
			w.Header().Set("X-Authenticate", "TOTP")
			apiError(w, http.StatusUnauthorized, "one-time password required")
			return
		}
		if err := a.cfg.Guard.TOTP(r.Context(), client, u.Name, code); err != nil {
			a.apiLoginFailed(w, u.Name, client, err)
			return
		}
	}

	expires := a.now().Add(apiTokenTTL).Truncate(time.Second)
	var (
		tok string
		rec store.Token
	)
	// Names are unique per user and remote-login always sends the same
	// application, so each token gets a random suffix; a clash (1 in 2^32
	// per pair of live tokens) is retried.
	for range 3 {
		tok, rec, err = a.cfg.Store.CreateToken(store.Token{User: u.Name, Name: app + "-" + randomSuffix(), Expires: expires})
		if !errors.Is(err, store.ErrExists) {
			break
		}
	}
	if err != nil {
		a.log.Error("create API token", "user", u.Name, "err", err)
		apiError(w, http.StatusInternalServerError, "internal error")
		return
	}
	a.cfg.Store.Audit(store.AuditEvent{Kind: store.AuditTokenCreate, OK: true, Actor: u.Name, User: u.Name,
		Token: rec.ID, Client: addrString(client), Reason: "remote-login " + app})
	a.log.Info("API token issued", "user", u.Name, "token", rec.ID, "name", rec.Name, "client", client)
	writeJSON(w, http.StatusOK, apiTokenReply{Token: tok, Expires: expires.Unix()})
}

// apiLoginFailed answers a refused password or code.
func (a *Admin) apiLoginFailed(w http.ResponseWriter, user string, client netip.Addr, err error) {
	if msg, ok := tunnel.RetryLater(w.Header(), err); ok {
		apiError(w, http.StatusTooManyRequests, msg)
		return
	}
	switch {
	case errors.Is(err, store.ErrBadCredentials):
		a.log.Debug("API token login refused", "user", user, "client", client, "err", err)
		apiError(w, http.StatusUnauthorized, "wrong user name, password or one-time password")
	default:
		a.log.Error("API token login", "err", err)
		apiError(w, http.StatusInternalServerError, "internal error")
	}
}

// tokenApp makes the application a client names fit a token's name
// ([A-Za-z0-9._@-]): other bytes become '-', and it is cut to
// apiTokenAppMax. It also ends up in the audit log, so nothing else may
// pass.
func tokenApp(app string) string {
	if len(app) > apiTokenAppMax {
		app = app[:apiTokenAppMax]
	}
	b := []byte(app)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '@', c == '-':
		default:
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return apiTokenDefaultApp
	}
	return string(b)
}

// randomSuffix returns 8 random hex digits.
func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
