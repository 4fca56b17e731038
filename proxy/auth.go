package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// errNeedAuth is every authentication failure: the user gets 407 with a
// challenge, whatever went wrong, so a prober learns nothing.
var errNeedAuth = errors.New("proxy authentication required")

// maxCredential bounds a decoded Proxy-Authorization value.
const maxCredential = 1024

// authenticate checks a Proxy-Authorization (or, for the WebTunnel client
// tools, Authorization) value: Basic user:secret (a password or an API
// token) or Bearer token. ctx bounds the wait of a password check.
func (p *Proxy) authenticate(ctx context.Context, header string, client netip.Addr) (store.Credential, error) {
	user, secret, ok := parseProxyAuth(header)
	if !ok {
		return store.Credential{}, errNeedAuth
	}
	cred, err := p.cfg.Authenticate(ctx, client, user, secret)
	_, throttled := tunnel.RetryLater(nil, err)
	switch {
	case err == nil:
		return cred, nil
	case throttled:
		return store.Credential{}, err
	case errors.Is(err, store.ErrBadCredentials), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNotFound):
		// The login package audits and rate-limits failures; the log gets
		// one debug line.
		p.cfg.Logger.Debug("proxy authentication failed", "user", user, "client", client, "err", err)
		return store.Credential{}, errNeedAuth
	}
	return store.Credential{}, fmt.Errorf("%w: authenticate %s: %w", errInternal, user, err)
}

// parseProxyAuth decodes "Basic base64(user:secret)" or "Bearer token"
// (user ""). Schemes are case insensitive (RFC 9110 §11.1).
func parseProxyAuth(h string) (user, secret string, ok bool) {
	scheme, value, found := strings.Cut(h, " ")
	value = strings.TrimSpace(value)
	if !found || value == "" || len(value) > maxCredential*4/3+4 {
		return "", "", false
	}
	switch {
	case equalFoldASCII(scheme, "Bearer"):
		return "", value, true
	case equalFoldASCII(scheme, "Basic"):
	default:
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(value)
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
	status, msg := statusFor(err)
	if status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="reflector"`)
	}
	httpError(w, err, status, msg)
}
