package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

// token is an API token as the API answers it.
type token struct {
	ID       string     `json:"id"`
	User     string     `json:"user"`
	Name     string     `json:"name"`
	Devices  string     `json:"devices"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires"`
	LastUsed *time.Time `json:"lastUsed"`
}

type tokenResult struct {
	Token  token  `json:"token"`
	Secret string `json:"secret"`
}

type tokenPage struct {
	Items []token `json:"items"`
}

// users is the users of the tokens of p, in order.
func (p tokenPage) users() string {
	var out []string
	for _, t := range p.Items {
		out = append(out, t.User)
	}
	return strings.Join(out, ",")
}

func TestTokenRoutesNeedAuthentication(t *testing.T) {
	r := newRig(t)
	requireAuthentication(t, r,
		req{http.MethodGet, api.Prefix + "/tokens", nil},
		req{http.MethodPost, api.Prefix + "/tokens", map[string]any{"name": "laptop"}},
		req{http.MethodDelete, api.Prefix + "/tokens/0000000000000000", nil})
}

func TestAUserMakesATokenAndItsSecretAuthenticates(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	var got tokenResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", r.token("alice"), map[string]any{"name": "laptop", "devices": "pump-*"}, &got)
	tok := got.Token
	if tok.User != "alice" || tok.Name != "laptop" || tok.Devices != "pump-*" || tok.Expires != nil || tok.LastUsed != nil || tok.ID == "" {
		t.Errorf("token %+v, want alice's laptop for pump-*, no expiry, never used", tok)
	}
	if !strings.HasPrefix(got.Secret, "rfl_") {
		t.Fatalf("secret %q", got.Secret)
	}
	var me struct {
		TokenID      string `json:"tokenId"`
		TokenDevices string `json:"tokenDevices"`
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/me", got.Secret, nil, &me)
	if me.TokenID != tok.ID || me.TokenDevices != "pump-*" {
		t.Errorf("GET /me with the new token: %+v", me)
	}
}

func TestAnAdminMakesATokenForAUserWithAnExpiry(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	expires := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	var got tokenResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", r.adminToken,
		map[string]any{"name": "ci", "user": "alice", "expires": expires.Format(time.RFC3339)}, &got)
	if got.Token.User != "alice" || got.Token.Expires == nil || !got.Token.Expires.Equal(expires) {
		t.Errorf("token %+v, want alice's, expiring %v", got.Token, expires)
	}
}

func TestCreateTokenErrors(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	alice := r.token("alice")
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{}, "name"},
		{map[string]any{"name": "x", "expires": "tomorrow"}, "expires"},
		{map[string]any{"name": "x", "expires": past}, "expires"},
		{map[string]any{"name": "x", "secret": "rfl_mine"}, "secret"},
		{map[string]any{"name": "x", "user": "nosuch"}, "user"},
	} {
		r.mustFail(http.StatusBadRequest, "invalid", tc.field, http.MethodPost, api.Prefix+"/tokens", r.adminToken, tc.body)
	}
	r.mustFail(http.StatusForbidden, "forbidden", "", http.MethodPost, api.Prefix+"/tokens", alice, map[string]any{"name": "x", "user": "root"})
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", alice, map[string]any{"name": "laptop"}, nil)
	r.mustFail(http.StatusConflict, "conflict", "", http.MethodPost, api.Prefix+"/tokens", alice, map[string]any{"name": "laptop"})
}

func TestAUserListsOnlyTheirOwnTokens(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	r.addUser("bob", store.RoleUser)
	alice := r.token("alice")
	r.token("bob")

	var p tokenPage
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/tokens", alice, nil, &p)
	if p.users() != "alice" {
		t.Errorf("alice's listing: %s", p.users())
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/tokens?user=alice", alice, nil, &p)
	if p.users() != "alice" {
		t.Errorf("alice's listing of ?user=alice: %s", p.users())
	}
	r.mustFail(http.StatusForbidden, "forbidden", "", http.MethodGet, api.Prefix+"/tokens?user=bob", alice, nil)

	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/tokens?user=bob", r.adminToken, nil, &p)
	if p.users() != "bob" {
		t.Errorf("the admin's listing of ?user=bob: %s", p.users())
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/tokens", r.adminToken, nil, &p)
	if len(p.Items) != 3 {
		t.Errorf("the admin's listing: %s, want every user's 3", p.users())
	}
	// The token in use shows when it was last used.
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/tokens", alice, nil, &p)
	if p.Items[0].LastUsed == nil {
		t.Errorf("alice's token in use has no lastUsed: %+v", p.Items[0])
	}
}

func TestRevokeTokenEndsItAndOnlyItsUserOrAnAdminMay(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	r.addUser("bob", store.RoleUser)
	alice, bob := r.token("alice"), r.token("bob")
	var made tokenResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", alice, map[string]any{"name": "laptop"}, &made)
	id := made.Token.ID

	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/tokens/"+id, bob, nil)
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/tokens/"+id, alice, nil, nil)
	r.mustFail(http.StatusUnauthorized, "unauthorized", "", http.MethodGet, api.Prefix+"/me", made.Secret, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/tokens/"+id, alice, nil)

	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", r.adminToken, map[string]any{"name": "x", "user": "bob"}, &made)
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/tokens/"+made.Token.ID, r.adminToken, nil, nil)
}
