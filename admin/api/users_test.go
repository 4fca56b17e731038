package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

// A request of a route, with a body good enough to reach the operation.
type req struct {
	method, path string
	body         any
}

// requireAuthentication checks that each request without credentials is
// 401 with a WWW-Authenticate challenge.
func requireAuthentication(t *testing.T, r *rig, reqs ...req) {
	t.Helper()
	for _, q := range reqs {
		status, data, hdr := r.call(q.method, q.path, "", q.body)
		if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s without credentials: %d, WWW-Authenticate %q; body %s", q.method, q.path, status, hdr.Get("WWW-Authenticate"), data)
		}
	}
}

// requireAdmin checks that each request is 403 forbidden for the token of a
// user who is no admin.
func requireAdmin(t *testing.T, r *rig, userToken string, reqs ...req) {
	t.Helper()
	for _, q := range reqs {
		r.mustFail(http.StatusForbidden, "forbidden", "", q.method, q.path, userToken, q.body)
	}
}

// userResult is POST /users's answer.
type userResult struct {
	User struct {
		Name   string   `json:"name"`
		Role   string   `json:"role"`
		Groups []string `json:"groups"`
		TOTP   bool     `json:"totp"`
	} `json:"user"`
	Password string `json:"password"`
}

// signsIn reports whether password is user's.
func signsIn(r *rig, user, password string) bool {
	_, err := r.srv.Store().CheckPassword(context.Background(), user, password)
	return err == nil
}

func TestUserRoutesNeedAuthenticationAndAdmin(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	alice := r.token("alice")
	reqs := []req{
		{http.MethodGet, api.Prefix + "/users", nil},
		{http.MethodPost, api.Prefix + "/users", map[string]any{"name": "bob"}},
		{http.MethodPatch, api.Prefix + "/users/root", map[string]any{"role": "user"}},
		{http.MethodDelete, api.Prefix + "/users/root", nil},
		{http.MethodPost, api.Prefix + "/users/root/password", map[string]any{}},
		{http.MethodDelete, api.Prefix + "/users/root/totp", nil},
	}
	requireAuthentication(t, r, append(reqs, req{http.MethodGet, api.Prefix + "/users/alice", nil})...)
	requireAdmin(t, r, alice, reqs...)
}

func TestAddUserWithoutPasswordAnswersTheGeneratedOne(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	status, data, hdr := r.call(http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "alice", "groups": []string{"plant"}})
	if status != http.StatusCreated {
		t.Fatalf("POST /users: %d %s", status, data)
	}
	var got userResult
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.User.Name != "alice" || got.User.Role != "user" || strings.Join(got.User.Groups, ",") != "plant" || got.User.TOTP {
		t.Errorf("user %+v, want alice, role user, in plant, no TOTP", got.User)
	}
	if got.Password == "" || !signsIn(r, "alice", got.Password) {
		t.Errorf("generated password %q does not sign alice in", got.Password)
	}
	if loc := hdr.Get("Location"); loc != api.Prefix+"/users/alice" {
		t.Errorf("Location %q", loc)
	}
}

func TestAddUserWithPasswordAnswersNone(t *testing.T) {
	r := newRig(t)
	var got userResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/users", r.adminToken,
		map[string]any{"name": "ada", "password": "correct horse battery", "role": "admin"}, &got)
	if got.Password != "" || got.User.Role != "admin" || len(got.User.Groups) != 0 {
		t.Errorf("answer %+v, want no password, role admin, no groups", got)
	}
	if !signsIn(r, "ada", "correct horse battery") {
		t.Error("the password given does not sign ada in")
	}
}

func TestAddUserErrorsNameTheField(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "bad name!"}, "name"},
		{map[string]any{}, "name"},
		{map[string]any{"name": "bob", "admin": true}, "admin"},
		{map[string]any{"name": "bob", "role": "boss"}, "role"},
		{map[string]any{"name": "bob", "groups": []string{"nosuch"}}, "groups"},
		{map[string]any{"name": "bob", "groups": "plant"}, "groups"},
	} {
		r.mustFail(http.StatusBadRequest, "invalid", tc.field, http.MethodPost, api.Prefix+"/users", r.adminToken, tc.body)
	}
}

func TestAddUserWithTakenNameIs409(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	r.mustFail(http.StatusConflict, "conflict", "", http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "alice"})
}

func TestAddUserIsAuditedWithTheCallerAsActor(t *testing.T) {
	r := newRig(t)
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "alice"}, nil)
	var got eventPage
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/audit?kind=user.add", r.adminToken, nil, &got)
	if len(got.Items) != 1 {
		t.Fatalf("user.add events: %+v, want 1", got.Items)
	}
	e := got.Items[0]
	if e.Actor != "root" || e.User != "alice" || e.Client != "127.0.0.1" || !e.OK {
		t.Errorf("event %+v, want actor root, user alice, client 127.0.0.1, ok", e)
	}
}

func TestUsersAreListedForAdmins(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	var got struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/users", r.adminToken, nil, &got)
	var names []string
	for _, u := range got.Items {
		names = append(names, u.Name)
	}
	if strings.Join(names, ",") != "alice,root" {
		t.Errorf("users %v, want alice, root", names)
	}
}

func TestAUserSeesThemselvesButNoOtherUser(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	alice := r.token("alice")
	var got struct {
		Name string `json:"name"`
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/users/alice", alice, nil, &got)
	if got.Name != "alice" {
		t.Errorf("GET /users/alice: %+v", got)
	}
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/users/root", alice, nil)
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/users/alice", r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/users/nosuch", r.adminToken, nil)
}

func TestPatchUserSetsRoleAndGroups(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addUser("alice", store.RoleUser)
	var got struct {
		Role   string   `json:"role"`
		Groups []string `json:"groups"`
	}
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"groups": []string{"plant"}}, &got)
	if got.Role != "user" || strings.Join(got.Groups, ",") != "plant" {
		t.Errorf("after groups: %+v", got)
	}
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"role": "admin", "groups": []string{}}, &got)
	if got.Role != "admin" || len(got.Groups) != 0 {
		t.Errorf("after role and no groups: %+v", got)
	}
	r.mustFail(http.StatusBadRequest, "bad_request", "", http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{})
	r.mustFail(http.StatusBadRequest, "invalid", "role", http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"role": "boss"})
	r.mustFail(http.StatusBadRequest, "invalid", "groups", http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"groups": []string{"nosuch"}})
	r.mustFail(http.StatusBadRequest, "invalid", "name", http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"name": "al"})
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodPatch, api.Prefix+"/users/nosuch", r.adminToken, map[string]any{"role": "user"})
}

func TestRemoveUserEndsTheirAccess(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	alice := r.token("alice")
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/users/alice", r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/users/alice", r.adminToken, nil)
	r.mustFail(http.StatusUnauthorized, "unauthorized", "", http.MethodGet, api.Prefix+"/me", alice, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/users/alice", r.adminToken, nil)
}

func TestAnAdminCannotRemoveThemselves(t *testing.T) {
	r := newRig(t)
	r.mustFail(http.StatusForbidden, "forbidden", "", http.MethodDelete, api.Prefix+"/users/root", r.adminToken, nil)
}

func TestSetUserPasswordGeneratesOneOrTakesTheGivenOne(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	var got struct {
		Password string `json:"password"`
	}
	r.must(http.StatusOK, http.MethodPost, api.Prefix+"/users/alice/password", r.adminToken, map[string]any{}, &got)
	if got.Password == "" || !signsIn(r, "alice", got.Password) || signsIn(r, "alice", "password-of-alice") {
		t.Errorf("generated password %q: not alice's only password", got.Password)
	}
	status, data, _ := r.call(http.MethodPost, api.Prefix+"/users/alice/password", r.adminToken, map[string]any{"password": "a new long password"})
	if status != http.StatusNoContent || len(data) != 0 || !signsIn(r, "alice", "a new long password") {
		t.Errorf("password given: %d %s", status, data)
	}
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodPost, api.Prefix+"/users/nosuch/password", r.adminToken, map[string]any{})
	r.mustFail(http.StatusBadRequest, "invalid", "passwd", http.MethodPost, api.Prefix+"/users/alice/password", r.adminToken, map[string]any{"passwd": "x"})
}

func TestAnAdminTurnsOffALostAuthenticatorWithoutACode(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	otpURL, err := r.srv.Store().BeginTOTP("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(otpURL)
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(u.Query().Get("secret"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Store().ConfirmTOTP("alice", code); err != nil {
		t.Fatal(err)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/users/alice/totp", r.adminToken, nil, nil)
	var got struct {
		TOTP bool `json:"totp"`
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/users/alice", r.adminToken, nil, &got)
	if got.TOTP {
		t.Error("alice still has TOTP")
	}
	r.mustFail(http.StatusConflict, "conflict", "", http.MethodDelete, api.Prefix+"/users/alice/totp", r.adminToken, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/users/nosuch/totp", r.adminToken, nil)
}
