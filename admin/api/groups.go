package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// groupJSON is a group as the API shows it, with its members counted.
type groupJSON struct {
	Name       string    `json:"name"`
	MaxDevices int       `json:"maxDevices"` // 0: no limit
	Users      int       `json:"users"`
	Devices    int       `json:"devices"`
	Created    time.Time `json:"created"`
}

func newGroupJSON(g store.Group) groupJSON {
	return groupJSON{Name: g.Name, MaxDevices: g.MaxDevices, Users: g.Users, Devices: g.Devices, Created: g.Created.UTC()}
}

func (a *API) groupRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/groups", serve: a.listGroups},
		{method: http.MethodPost, path: Prefix + "/groups", serve: a.addGroup},
		{method: http.MethodGet, path: Prefix + "/groups/{name}", serve: a.getGroup},
		{method: http.MethodPatch, path: Prefix + "/groups/{name}", serve: a.patchGroup},
		{method: http.MethodDelete, path: Prefix + "/groups/{name}", serve: a.removeGroup},
	}
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	groups, err := a.ops.Groups(ctx(r), c)
	if err != nil {
		return err
	}
	out := page[groupJSON]{Items: make([]groupJSON, len(groups))}
	for i, g := range groups {
		out.Items[i] = newGroupJSON(g)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	g, err := a.ops.Group(ctx(r), c, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newGroupJSON(g))
	return nil
}

// newGroupRequest is POST /groups's body.
type newGroupRequest struct {
	Name       string `json:"name"`
	MaxDevices int    `json:"maxDevices"` // absent or 0: no limit
}

func (a *API) addGroup(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req newGroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalid("name", "name is required: the group's name")
	}
	g, err := a.ops.AddGroup(ctx(r), c, req.Name, req.MaxDevices)
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/groups/"+url.PathEscape(g.Name))
	writeJSON(w, http.StatusCreated, newGroupJSON(g))
	return nil
}

// patchGroupRequest is PATCH /groups/{name}'s body. The quota is all a
// group has to change; it is required.
type patchGroupRequest struct {
	MaxDevices *int `json:"maxDevices"`
}

func (a *API) patchGroup(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req patchGroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.MaxDevices == nil {
		return invalid("maxDevices", "maxDevices is required: the device quota, 0 for no limit")
	}
	g, err := a.ops.SetGroupMaxDevices(ctx(r), c, r.PathValue("name"), *req.MaxDevices)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newGroupJSON(g))
	return nil
}

func (a *API) removeGroup(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if err := a.ops.RemoveGroup(ctx(r), c, r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}
