package api

import (
	"net/http"
	"net/url"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

func (a *API) userRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/users", serve: a.listUsers},
		{method: http.MethodPost, path: Prefix + "/users", serve: a.addUser},
		{method: http.MethodGet, path: Prefix + "/users/{name}", serve: a.getUser},
		{method: http.MethodPatch, path: Prefix + "/users/{name}", serve: a.patchUser},
		{method: http.MethodDelete, path: Prefix + "/users/{name}", serve: a.removeUser},
		{method: http.MethodPost, path: Prefix + "/users/{name}/password", serve: a.setUserPassword},
		{method: http.MethodDelete, path: Prefix + "/users/{name}/totp", serve: a.resetUserTOTP},
	}
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	users, err := a.ops.Users(ctx(r), c)
	if err != nil {
		return err
	}
	out := page[userJSON]{Items: make([]userJSON, len(users))}
	for i, u := range users {
		out.Items[i] = newUserJSON(u)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	u, err := a.ops.User(ctx(r), c, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
	return nil
}

// newUserRequest is POST /users's body.
type newUserRequest struct {
	Name string `json:"name"`
	// Password; absent generates one, which the answer shows once.
	Password string   `json:"password"`
	Role     string   `json:"role"` // absent: user
	Groups   []string `json:"groups"`
}

// newUserAnswer is POST /users's answer.
type newUserAnswer struct {
	User userJSON `json:"user"`
	// Password is the generated password, shown once; absent when the
	// request gave one.
	Password string `json:"password,omitempty"`
}

func (a *API) addUser(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req newUserRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return invalid("name", "name is required: the user's login name")
	}
	u, generated, err := a.ops.AddUser(ctx(r), c, ops.NewUser{Name: req.Name, Password: req.Password, Role: store.Role(req.Role), Groups: req.Groups})
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/users/"+url.PathEscape(u.Name))
	writeJSON(w, http.StatusCreated, newUserAnswer{User: newUserJSON(u), Password: generated})
	return nil
}

// patchUserRequest is PATCH /users/{name}'s body: fields present are set
// (groups replaces the list; [] empties it), fields absent stay.
type patchUserRequest struct {
	Role   *string   `json:"role"`
	Groups *[]string `json:"groups"`
}

func (a *API) patchUser(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req patchUserRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Role == nil && req.Groups == nil {
		return badRequest("nothing to change: give role or groups")
	}
	update := ops.UserUpdate{Groups: req.Groups}
	if req.Role != nil {
		role := store.Role(*req.Role)
		update.Role = &role
	}
	u, _, err := a.ops.UpdateUser(ctx(r), c, r.PathValue("name"), update)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newUserJSON(u))
	return nil
}

func (a *API) removeUser(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if err := a.ops.RemoveUser(ctx(r), c, r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}

// setPasswordRequest is POST /users/{name}/password's body.
type setPasswordRequest struct {
	// Password; absent generates one, which the answer shows once.
	Password string `json:"password"`
}

// generatedPasswordJSON is the answer that shows a generated password once.
type generatedPasswordJSON struct {
	Password string `json:"password"`
}

func (a *API) setUserPassword(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req setPasswordRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	generated, err := a.ops.SetPassword(ctx(r), c, r.PathValue("name"), req.Password)
	if err != nil {
		return err
	}
	if generated == "" {
		return noContent(w)
	}
	writeJSON(w, http.StatusOK, generatedPasswordJSON{Password: generated})
	return nil
}

// resetUserTOTP turns a user's TOTP off without a code, for a user who
// lost their authenticator (admins). It also cancels an enrolment not yet
// confirmed.
func (a *API) resetUserTOTP(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if _, err := a.ops.DisableTOTP(ctx(r), c, r.PathValue("name"), "", true); err != nil {
		return err
	}
	return noContent(w)
}
