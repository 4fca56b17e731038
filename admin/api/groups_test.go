package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

// group is a group as the API answers it.
type group struct {
	Name       string    `json:"name"`
	MaxDevices int       `json:"maxDevices"`
	Users      int       `json:"users"`
	Devices    int       `json:"devices"`
	Created    time.Time `json:"created"`
}

type groupPage struct {
	Items []group `json:"items"`
}

func TestGroupRoutesNeedAuthenticationAndChangesNeedAdmin(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addUser("alice", store.RoleUser, "plant")
	alice := r.token("alice")
	changes := []req{
		{http.MethodPost, api.Prefix + "/groups", map[string]any{"name": "office"}},
		{http.MethodPatch, api.Prefix + "/groups/plant", map[string]any{"maxDevices": 1}},
		{http.MethodDelete, api.Prefix + "/groups/plant", nil},
	}
	requireAuthentication(t, r, append(changes,
		req{http.MethodGet, api.Prefix + "/groups", nil},
		req{http.MethodGet, api.Prefix + "/groups/plant", nil})...)
	requireAdmin(t, r, alice, changes...)
}

func TestAddGroupAnswersItWithItsCounts(t *testing.T) {
	r := newRig(t)
	var g group
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/groups", r.adminToken, map[string]any{"name": "plant", "maxDevices": 5}, &g)
	if g.Name != "plant" || g.MaxDevices != 5 || g.Users != 0 || g.Devices != 0 || g.Created.IsZero() {
		t.Errorf("group %+v", g)
	}
	r.addUser("alice", store.RoleUser, "plant")
	r.addDevice("pump-1", "plant")
	r.addDevice("pump-2", "plant")
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/groups/plant", r.adminToken, nil, &g)
	if g.Users != 1 || g.Devices != 2 {
		t.Errorf("counts: %d users, %d devices; want 1 and 2", g.Users, g.Devices)
	}
	r.mustFail(http.StatusConflict, "conflict", "", http.MethodPost, api.Prefix+"/groups", r.adminToken, map[string]any{"name": "plant"})
}

func TestAddGroupErrorsNameTheField(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "bad name!"}, "name"},
		{map[string]any{}, "name"},
		{map[string]any{"name": "plant", "maxDevices": -1}, "maxDevices"},
		{map[string]any{"name": "plant", "maxDevices": "5"}, "maxDevices"},
		{map[string]any{"name": "plant", "quota": 5}, "quota"},
	} {
		r.mustFail(http.StatusBadRequest, "invalid", tc.field, http.MethodPost, api.Prefix+"/groups", r.adminToken, tc.body)
	}
}

func TestAUserSeesOnlyTheirOwnGroups(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addGroup("office")
	r.addUser("alice", store.RoleUser, "plant")
	alice := r.token("alice")
	var p groupPage
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/groups", alice, nil, &p)
	if len(p.Items) != 1 || p.Items[0].Name != "plant" {
		t.Errorf("alice's groups: %+v, want plant alone", p.Items)
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/groups/plant", alice, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/groups/office", alice, nil)

	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/groups", r.adminToken, nil, &p)
	if len(p.Items) != 2 {
		t.Errorf("the admin's groups: %+v, want both", p.Items)
	}
}

func TestAUserWithoutGroupsListsNone(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addUser("alice", store.RoleUser)
	status, data, _ := r.call(http.MethodGet, api.Prefix+"/groups", r.token("alice"), nil)
	if status != http.StatusOK || string(data) != "{\"items\":[]}\n" {
		t.Errorf("GET /groups: %d %s, want an empty array", status, data)
	}
}

func TestPatchGroupSetsTheQuota(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	var g group
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/groups/plant", r.adminToken, map[string]any{"maxDevices": 3}, &g)
	if g.MaxDevices != 3 {
		t.Errorf("maxDevices %d, want 3", g.MaxDevices)
	}
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/groups/plant", r.adminToken, map[string]any{"maxDevices": 0}, &g)
	if g.MaxDevices != 0 {
		t.Errorf("maxDevices %d, want 0", g.MaxDevices)
	}
	r.mustFail(http.StatusBadRequest, "invalid", "maxDevices", http.MethodPatch, api.Prefix+"/groups/plant", r.adminToken, map[string]any{})
	r.mustFail(http.StatusBadRequest, "invalid", "maxDevices", http.MethodPatch, api.Prefix+"/groups/plant", r.adminToken, map[string]any{"maxDevices": -1})
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodPatch, api.Prefix+"/groups/nosuch", r.adminToken, map[string]any{"maxDevices": 1})
}

func TestRemoveGroupInUseIs409(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addDevice("pump-1", "plant")
	r.mustFail(http.StatusConflict, "conflict", "", http.MethodDelete, api.Prefix+"/groups/plant", r.adminToken, nil)
	if err := r.srv.Store().RemoveDevice("pump-1"); err != nil {
		t.Fatal(err)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/groups/plant", r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/groups/plant", r.adminToken, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/groups/plant", r.adminToken, nil)
}
