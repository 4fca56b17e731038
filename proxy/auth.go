package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/reflector-dev/reflector/store"
)

// errNeedAuth is every authentication failure: the user gets 407 with a
// challenge, whatever went wrong, so a prober learns nothing.
var errNeedAuth = errors.New("proxy authentication required")

// maxCredential bounds a decoded Proxy-Authorization value.
const maxCredential = 1024

// authenticate checks the request's Proxy-Authorization (Basic user:secret).
func (p *Proxy) authenticate(ctx context.Context, r *http.Request) (store.User, error) {
	user, secret, ok := parseProxyBasic(r.Header.Get("Proxy-Authorization"))
	if !ok {
		return store.User{}, errNeedAuth
	}
	u, err := p.cfg.Authenticate(ctx, user, secret)
	if errors.Is(err, store.ErrBadCredentials) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
		p.cfg.Logger.Warn("proxy authentication failed", "user", user, "remote", r.RemoteAddr)
		return store.User{}, errNeedAuth
	}
	if err != nil {
		return store.User{}, fmt.Errorf("authenticate %s: %w", user, err)
	}
	return u, nil
}

// parseProxyBasic decodes "Basic base64(user:secret)". The scheme is case
// insensitive (RFC 9110 §11.1).
func parseProxyBasic(h string) (user, secret string, ok bool) {
	scheme, enc, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") || len(enc) > maxCredential*4/3+4 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", false
	}
	user, secret, ok = strings.Cut(string(raw), ":")
	if !ok || user == "" || secret == "" {
		return "", "", false
	}
	return user, secret, true
}

// refuse answers a proxy request that failed before anything was dialled or
// hijacked. The connection stays usable, so a client can retry with
// credentials on it.
func (p *Proxy) refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, errNeedAuth) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="reflector"`)
		http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	status, msg := statusFor(err)
	http.Error(w, msg, status)
}
