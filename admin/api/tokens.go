package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// tokenJSON is an API token as the API shows it; never its secret.
type tokenJSON struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Name    string    `json:"name"`
	Devices string    `json:"devices"` // device-id pattern; "": every device the user may reach
	Created time.Time `json:"created"`
	// Expires and LastUsed are absent for never.
	Expires  *time.Time `json:"expires,omitempty"`
	LastUsed *time.Time `json:"lastUsed,omitempty"`
}

func newTokenJSON(t store.Token) tokenJSON {
	return tokenJSON{ID: t.ID, User: t.User, Name: t.Name, Devices: t.Devices, Created: t.Created.UTC(),
		Expires: optTime(t.Expires), LastUsed: optTime(t.LastUsed)}
}

// optTime is t in UTC, or nil for the zero time (never).
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// parseTime reads an RFC 3339 time of a request body's field: zero when
// absent.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalid(field, fmt.Sprintf("%s %q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", field, s))
	}
	return t, nil
}

func (a *API) tokenRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/tokens", serve: a.listTokens},
		{method: http.MethodPost, path: Prefix + "/tokens", serve: a.createToken},
		{method: http.MethodDelete, path: Prefix + "/tokens/{id}", serve: a.revokeToken},
	}
}

// listTokens lists the caller's own tokens; an admin's, every user's, or
// those of ?user=.
func (a *API) listTokens(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	tokens, err := a.ops.Tokens(ctx(r), c, r.URL.Query().Get("user"))
	if err != nil {
		return err
	}
	out := page[tokenJSON]{Items: make([]tokenJSON, len(tokens))}
	for i, t := range tokens {
		out.Items[i] = newTokenJSON(t)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// newTokenRequest is POST /tokens's body.
type newTokenRequest struct {
	Name string `json:"name"`
	// User the token acts as; absent: the caller. Only admins name others.
	User    string `json:"user"`
	Devices string `json:"devices"`
	// Expires is an RFC 3339 time; absent: never.
	Expires string `json:"expires"`
}

// newTokenAnswer is POST /tokens's answer: the token and its secret, shown
// once.
type newTokenAnswer struct {
	Token  tokenJSON `json:"token"`
	Secret string    `json:"secret"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req newTokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalid("name", "name is required: what the token is for, e.g. laptop")
	}
	expires, err := parseTime("expires", req.Expires)
	if err != nil {
		return err
	}
	secret, rec, err := a.ops.CreateToken(ctx(r), c, ops.NewToken{User: req.User, Name: req.Name, Devices: req.Devices, Expires: expires})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, newTokenAnswer{Token: newTokenJSON(rec), Secret: secret})
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if _, err := a.ops.RevokeToken(ctx(r), c, r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}
