package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// People: the users and groups, for admins. Every change goes through
// internal/ops, which checks the caller's rights again and writes the audit
// log; the pages ask for an admin first so that a user gets 403 on every
// one of them, reads included.

func (w *Web) peopleRoutes() map[string]handler {
	a := adminOnly
	return map[string]handler{
		"GET /people":                            a(w.people),
		"POST /people/users":                     a(w.addUser),
		"GET /people/users/{name}":               a(w.user),
		"POST /people/users/{name}":              a(w.updateUser),
		"POST /people/users/{name}/password":     a(w.resetPassword),
		"POST /people/users/{name}/totp/disable": a(w.forceDisableTOTP),
		"GET /people/users/{name}/remove":        a(w.removeUserForm),
		"POST /people/users/{name}/remove":       a(w.removeUser),
		"POST /people/groups":                    a(w.addGroup),
		"GET /people/groups/{name}":              a(w.group),
		"POST /people/groups/{name}":             a(w.setGroupQuota),
		"POST /people/groups/{name}/remove":      a(w.removeGroup),
	}
}

// adminOnly refuses h to everyone but admins.
func adminOnly(h handler) handler {
	return func(rw http.ResponseWriter, r *http.Request, v *visit) error {
		if !v.caller.Admin() {
			return fmt.Errorf("the people pages: %w: administrators only", ops.ErrForbidden)
		}
		return h(rw, r, v)
	}
}

// form is a form's entered values and its errors by field, for a form shown
// again after a failure.
type form struct {
	Values map[string]string
	Errors map[string]string
}

func newForm() form { return form{Values: map[string]string{}, Errors: map[string]string{}} }

// shown reports whether err is one to show on the form (a value the
// operation refused), setting it next to its field or, without one, under
// field fallback. Other errors (rights, faults) are not the form's.
func (f form) shown(err error, fallback string) bool {
	if field, msg, ok := fieldError(err); ok {
		f.Errors[field] = msg
		return true
	}
	for _, e := range []error{store.ErrInvalid, store.ErrExists, store.ErrNotEmpty, store.ErrQuota, store.ErrBadCredentials,
		ops.ErrWrongPassword, ops.ErrTOTPEnabled, ops.ErrTOTPNotEnabled, ops.ErrNoEnrolment, ops.ErrMalformedCode} {
		if errors.Is(err, e) {
			f.Errors[fallback] = err.Error()
			return true
		}
	}
	return false
}

// formAgain is the status of a form shown again with what was refused next
// to its field (a name taken, a group in use, a wrong code): a page the
// visitor goes on from, not a failed request. Chromium logs every document
// answered 4xx as a console error, which would hide real ones among them.
const formAgain = http.StatusOK

// done is the notice a redirect after a change names in its query
// (?done=key), as a text key: only known ones are shown.
func (w *Web) done(r *http.Request, keys ...string) string {
	d := r.URL.Query().Get("done")
	if d != "" && slices.Contains(keys, d) {
		return w.brand.Text("people.done." + d)
	}
	return ""
}

// peopleData is /people's view.
type peopleData struct {
	Users     []store.User
	Groups    []store.Group
	GroupList []string
	UserForm  form
	GroupForm form
	Chosen    map[string]bool // groups ticked on the add-user form
}

func (w *Web) peopleView(r *http.Request, v *visit, d *peopleData) error {
	var err error
	if d.Users, err = w.ops.Users(r.Context(), v.caller); err != nil {
		return err
	}
	if d.Groups, err = w.ops.Groups(r.Context(), v.caller); err != nil {
		return err
	}
	for _, g := range d.Groups {
		d.GroupList = append(d.GroupList, g.Name)
	}
	if d.UserForm.Values == nil {
		d.UserForm = newForm()
	}
	if d.GroupForm.Values == nil {
		d.GroupForm = newForm()
	}
	return nil
}

func (w *Web) people(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d := &peopleData{}
	if err := w.peopleView(r, v, d); err != nil {
		return err
	}
	w.render(rw, http.StatusOK, "people", v, view{Title: w.brand.Text("people.title"), Nav: "people",
		Notice: w.done(r, "userRemoved", "groupRemoved"), Data: d})
	return nil
}

func (w *Web) renderPeople(rw http.ResponseWriter, r *http.Request, v *visit, d *peopleData) error {
	if err := w.peopleView(r, v, d); err != nil {
		return err
	}
	w.render(rw, formAgain, "people", v, view{Title: w.brand.Text("people.title"), Nav: "people", Data: d})
	return nil
}

// passwordData is a page that shows a secret once: a generated password or a
// new token.
type passwordData struct {
	Intro  string
	Secret string
	Extra  string // a line to copy too (the curl line of a token)
	Back   string
	BackTo string
}

func (w *Web) renderPassword(rw http.ResponseWriter, v *visit, title, nav string, d passwordData) {
	w.render(rw, http.StatusOK, "people-secret", v, view{Title: title, Nav: nav, Data: d})
}

// postedGroups are the groups ticked on a form.
func postedGroups(r *http.Request) []string {
	var gs []string
	for _, g := range r.PostForm["groups"] {
		if g = strings.TrimSpace(g); g != "" {
			gs = append(gs, g)
		}
	}
	return gs
}

func (w *Web) addUser(rw http.ResponseWriter, r *http.Request, v *visit) error {
	f := newForm()
	name := strings.TrimSpace(r.PostFormValue("name"))
	role := r.PostFormValue("role")
	groups := postedGroups(r)
	f.Values["name"], f.Values["role"] = name, role
	password := ""
	if r.PostFormValue("generate") == "" {
		password = r.PostFormValue("password")
		if password == "" {
			f.Errors["password"] = w.brand.Text("people.passwordOrGenerate")
		}
	}
	if role != string(store.RoleAdmin) && role != string(store.RoleUser) {
		f.Errors["role"] = w.brand.Text("people.badRole")
	}
	d := &peopleData{UserForm: f, Chosen: map[string]bool{}}
	for _, g := range groups {
		d.Chosen[g] = true
	}
	if len(f.Errors) > 0 {
		return w.renderPeople(rw, r, v, d)
	}
	u, generated, err := w.ops.AddUser(r.Context(), v.caller, ops.NewUser{Name: name, Password: password, Role: store.Role(role), Groups: groups})
	if err != nil {
		if f.shown(err, "name") {
			return w.renderPeople(rw, r, v, d)
		}
		return err
	}
	if generated == "" {
		redirect(rw, "/people/users/"+url.PathEscape(u.Name)+"?done=userAdded")
		return nil
	}
	w.renderPassword(rw, v, w.brand.Text("people.userAdded"), "people", passwordData{
		Intro: w.brand.Text("people.generatedIntro"), Secret: generated,
		Back: "/people/users/" + url.PathEscape(u.Name), BackTo: u.Name,
	})
	return nil
}

// userData is a user's page.
type userData struct {
	U         store.User
	Groups    []string // every group, for the checkboxes
	Chosen    map[string]bool
	Form      form // role and groups
	PassForm  form
	TOTPError string
}

func (w *Web) userView(r *http.Request, v *visit, name string) (*userData, error) {
	u, err := w.ops.User(r.Context(), v.caller, name)
	if err != nil {
		return nil, err
	}
	groups, err := w.ops.Groups(r.Context(), v.caller)
	if err != nil {
		return nil, err
	}
	d := &userData{U: u, Chosen: map[string]bool{}, Form: newForm(), PassForm: newForm()}
	for _, g := range groups {
		d.Groups = append(d.Groups, g.Name)
	}
	for _, g := range u.Groups {
		d.Chosen[g] = true
	}
	d.Form.Values["role"] = string(u.Role)
	return d, nil
}

func (w *Web) renderUser(rw http.ResponseWriter, r *http.Request, v *visit, status int, d *userData, notice string) {
	w.render(rw, status, "user", v, view{Title: w.brand.Text("user.title") + " " + d.U.Name, Nav: "people", Notice: notice, Data: d})
}

func (w *Web) user(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.userView(r, v, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.renderUser(rw, r, v, http.StatusOK, d, w.done(r, "userAdded", "userChanged", "passwordSet", "totpOff"))
	return nil
}

func (w *Web) updateUser(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	d, err := w.userView(r, v, name)
	if err != nil {
		return err
	}
	role := store.Role(r.PostFormValue("role"))
	groups := postedGroups(r)
	if groups == nil {
		groups = []string{}
	}
	_, _, err = w.ops.UpdateUser(r.Context(), v.caller, name, ops.UserUpdate{Role: &role, Groups: &groups})
	if err != nil {
		if d.Form.shown(err, "role") {
			d.Form.Values["role"] = string(role)
			d.Chosen = map[string]bool{}
			for _, g := range groups {
				d.Chosen[g] = true
			}
			w.renderUser(rw, r, v, formAgain, d, "")
			return nil
		}
		return err
	}
	redirect(rw, "/people/users/"+url.PathEscape(name)+"?done=userChanged")
	return nil
}

func (w *Web) resetPassword(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	password := ""
	if r.PostFormValue("generate") == "" {
		password = r.PostFormValue("password")
	}
	if password == "" && r.PostFormValue("generate") == "" {
		d, err := w.userView(r, v, name)
		if err != nil {
			return err
		}
		d.PassForm.Errors["password"] = w.brand.Text("people.passwordOrGenerate")
		w.renderUser(rw, r, v, formAgain, d, "")
		return nil
	}
	generated, err := w.ops.SetPassword(r.Context(), v.caller, name, password)
	if err != nil {
		d, verr := w.userView(r, v, name)
		if verr != nil {
			return verr
		}
		if d.PassForm.shown(err, "password") {
			w.renderUser(rw, r, v, formAgain, d, "")
			return nil
		}
		return err
	}
	if generated == "" {
		redirect(rw, "/people/users/"+url.PathEscape(name)+"?done=passwordSet")
		return nil
	}
	w.renderPassword(rw, v, w.brand.Text("user.passwordReset"), "people", passwordData{
		Intro: w.brand.Text("people.generatedIntro"), Secret: generated,
		Back: "/people/users/" + url.PathEscape(name), BackTo: name,
	})
	return nil
}

func (w *Web) forceDisableTOTP(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	if _, err := w.ops.DisableTOTP(r.Context(), v.caller, name, "", true); err != nil {
		d, verr := w.userView(r, v, name)
		if verr != nil {
			return verr
		}
		f := newForm()
		if f.shown(err, "code") {
			d.TOTPError = f.Errors["code"]
			w.renderUser(rw, r, v, formAgain, d, "")
			return nil
		}
		return err
	}
	redirect(rw, "/people/users/"+url.PathEscape(name)+"?done=totpOff")
	return nil
}

func (w *Web) removeUserForm(rw http.ResponseWriter, r *http.Request, v *visit) error {
	u, err := w.ops.User(r.Context(), v.caller, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.render(rw, http.StatusOK, "user-remove", v, view{Title: w.brand.Text("user.removeTitle") + " " + u.Name, Nav: "people", Data: u})
	return nil
}

func (w *Web) removeUser(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	if err := w.ops.RemoveUser(r.Context(), v.caller, name); err != nil {
		if errors.Is(err, ops.ErrForbidden) && v.caller.Admin() {
			// Only themselves: say so on their page.
			d, verr := w.userView(r, v, name)
			if verr != nil {
				return verr
			}
			w.render(rw, formAgain, "user", v, view{Title: w.brand.Text("user.title") + " " + name, Nav: "people",
				Error: w.brand.Text("user.notYourself"), Data: d})
			return nil
		}
		return err
	}
	redirect(rw, "/people?done=userRemoved")
	return nil
}

// quota reads a device quota: "" or 0 for none.
func quota(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

func (w *Web) addGroup(rw http.ResponseWriter, r *http.Request, v *visit) error {
	f := newForm()
	name := strings.TrimSpace(r.PostFormValue("name"))
	f.Values["name"], f.Values["maxDevices"] = name, r.PostFormValue("maxDevices")
	d := &peopleData{GroupForm: f}
	n, ok := quota(r.PostFormValue("maxDevices"))
	if !ok {
		f.Errors["maxDevices"] = w.brand.Text("group.badQuota")
		return w.renderPeople(rw, r, v, d)
	}
	if _, err := w.ops.AddGroup(r.Context(), v.caller, name, n); err != nil {
		if f.shown(err, "name") {
			return w.renderPeople(rw, r, v, d)
		}
		return err
	}
	redirect(rw, "/people/groups/"+url.PathEscape(name)+"?done=groupAdded")
	return nil
}

// groupData is a group's page.
type groupData struct {
	G       store.Group
	Members []string
	Devices []string
	More    bool // more devices than listed
	Form    form
}

// groupDevicesShown bounds the device names a group's page lists.
const groupDevicesShown = 200

func (w *Web) groupView(r *http.Request, v *visit, name string) (*groupData, error) {
	g, err := w.ops.Group(r.Context(), v.caller, name)
	if err != nil {
		return nil, err
	}
	d := &groupData{G: g, Form: newForm()}
	d.Form.Values["maxDevices"] = strconv.Itoa(g.MaxDevices)
	users, err := w.ops.Users(r.Context(), v.caller)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if slices.Contains(u.Groups, name) {
			d.Members = append(d.Members, u.Name)
		}
	}
	page, err := w.ops.Devices(r.Context(), v.caller, ops.DeviceQuery{Group: name, Limit: groupDevicesShown})
	if err != nil {
		return nil, err
	}
	for _, dev := range page.Devices {
		d.Devices = append(d.Devices, dev.ID)
	}
	d.More = page.Next != ""
	return d, nil
}

func (w *Web) renderGroup(rw http.ResponseWriter, v *visit, status int, d *groupData, notice, errMsg string) {
	w.render(rw, status, "group", v, view{Title: w.brand.Text("group.title") + " " + d.G.Name, Nav: "people",
		Notice: notice, Error: errMsg, Data: d})
}

func (w *Web) group(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.groupView(r, v, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.renderGroup(rw, v, http.StatusOK, d, w.done(r, "groupAdded", "groupChanged"), "")
	return nil
}

func (w *Web) setGroupQuota(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	d, err := w.groupView(r, v, name)
	if err != nil {
		return err
	}
	n, ok := quota(r.PostFormValue("maxDevices"))
	d.Form.Values["maxDevices"] = r.PostFormValue("maxDevices")
	if !ok {
		d.Form.Errors["maxDevices"] = w.brand.Text("group.badQuota")
		w.renderGroup(rw, v, formAgain, d, "", "")
		return nil
	}
	if _, err := w.ops.SetGroupMaxDevices(r.Context(), v.caller, name, n); err != nil {
		if d.Form.shown(err, "maxDevices") {
			w.renderGroup(rw, v, formAgain, d, "", "")
			return nil
		}
		return err
	}
	redirect(rw, "/people/groups/"+url.PathEscape(name)+"?done=groupChanged")
	return nil
}

func (w *Web) removeGroup(rw http.ResponseWriter, r *http.Request, v *visit) error {
	name := r.PathValue("name")
	err := w.ops.RemoveGroup(r.Context(), v.caller, name)
	if errors.Is(err, store.ErrNotEmpty) {
		d, verr := w.groupView(r, v, name)
		if verr != nil {
			return verr
		}
		w.renderGroup(rw, v, formAgain, d, "", w.brand.Text("group.inUse"))
		return nil
	}
	if err != nil {
		return err
	}
	redirect(rw, "/people?done=groupRemoved")
	return nil
}
