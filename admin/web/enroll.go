package web

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// The enrolment keys page (admins): agents enrol themselves with a key
// into its group.

// enrollView is the enrolment keys page's data.
type enrollView struct {
	Keys   []enrollRow
	Groups []string
	Form   enrollForm
	Errors formErrors
	// A key just made, shown once, with the agent's command line.
	Key, KeyLine string
	KeyRec       enrollRow
}

// enrollRow is a key's line in the list.
type enrollRow struct {
	store.EnrollKey
	Uses    string // "2 / 10", "2 / no limit"
	Expires string
	Expired bool
}

// enrollForm is the create form's input.
type enrollForm struct {
	Group, Max, Hours string
}

func newEnrollRow(k store.EnrollKey, now time.Time) enrollRow {
	row := enrollRow{EnrollKey: k, Uses: strconv.Itoa(k.Uses) + " / "}
	if k.Max == 0 {
		row.Uses += "∞"
	} else {
		row.Uses += strconv.Itoa(k.Max)
	}
	if k.Expires.IsZero() {
		row.Expires = "never"
	} else {
		row.Expires = k.Expires.UTC().Format("2006-01-02 15:04 UTC")
		row.Expired = !k.Expires.After(now)
	}
	return row
}

// enrollDefaultHours is the expiry the create form suggests: ops'
// default.
var enrollDefaultHours = strconv.Itoa(int(ops.DefaultEnrollLifetime / time.Hour))

// enrollKeys lists the enrolment keys, with the form to create one.
func (w *Web) enrollKeys(rw http.ResponseWriter, r *http.Request, v *visit) error {
	ev := enrollView{Form: enrollForm{Hours: enrollDefaultHours}}
	if err := w.fillEnrollView(r, v, &ev); err != nil {
		return err
	}
	pv := view{Title: w.brand.Text("keys.title"), Nav: "keys", Data: ev}
	if r.URL.Query().Get("done") == "removed" {
		pv.Notice = w.brand.Text("keys.removed")
	}
	w.render(rw, http.StatusOK, "enrollment-keys", v, pv)
	return nil
}

func (w *Web) fillEnrollView(r *http.Request, v *visit, ev *enrollView) error {
	keys, err := w.ops.EnrollKeys(r.Context(), v.caller)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range keys {
		ev.Keys = append(ev.Keys, newEnrollRow(k, now))
	}
	groups, err := w.ops.Groups(r.Context(), v.caller)
	if err != nil {
		return err
	}
	for _, g := range groups {
		ev.Groups = append(ev.Groups, g.Name)
	}
	return nil
}

// createEnrollKey makes a key and shows it once.
func (w *Web) createEnrollKey(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if !v.caller.Admin() {
		return fmt.Errorf("create an enrolment key: %w", ops.ErrForbidden)
	}
	f := enrollForm{Group: r.PostFormValue("group"), Max: strings.TrimSpace(r.PostFormValue("max")), Hours: strings.TrimSpace(r.PostFormValue("hours"))}
	ev := enrollView{Form: f, Errors: formErrors{}}
	k := store.EnrollKey{Group: f.Group}
	if f.Group == "" {
		ev.Errors["group"] = w.brand.Text("keys.groupRequired")
	}
	if f.Max != "" {
		n, err := strconv.Atoi(f.Max)
		if err != nil || n < 0 {
			ev.Errors["max"] = w.brand.Text("keys.badMax")
		}
		k.Max = n
	}
	if f.Hours != "" {
		n, err := strconv.Atoi(f.Hours)
		if err != nil || n <= 0 || n > 24*3650 {
			ev.Errors["hours"] = w.brand.Text("keys.badHours")
		}
		k.Expires = time.Now().Add(time.Duration(n) * time.Hour)
	}
	ok := false
	if len(ev.Errors) == 0 {
		key, rec, err := w.ops.CreateEnrollKey(r.Context(), v.caller, k)
		if err == nil {
			ev = enrollView{Form: enrollForm{Hours: enrollDefaultHours}, Key: key, KeyLine: w.ops.EnrollAgentLine(key), KeyRec: newEnrollRow(rec, time.Now())}
			ok = true
		} else if err := opError(err, ev.Errors, "group", "group"); err != nil {
			return err
		} else if msg, ok := ev.Errors["expires"]; ok {
			delete(ev.Errors, "expires")
			ev.Errors["hours"] = msg
		}
	}
	if err := w.fillEnrollView(r, v, &ev); err != nil {
		return err
	}
	pv := view{Title: w.brand.Text("keys.title"), Nav: "keys", Data: ev}
	if !ok {
		pv.Error = ev.Errors[""]
		if pv.Error == "" {
			pv.Error = w.brand.Text("device.formErrors")
		}
	}
	w.render(rw, http.StatusOK, "enrollment-keys", v, pv)
	return nil
}

// removeEnrollKey removes a key.
func (w *Web) removeEnrollKey(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if err := w.ops.RemoveEnrollKey(r.Context(), v.caller, r.PathValue("id")); err != nil {
		return err
	}
	redirect(rw, "/enrollment-keys?done=removed")
	return nil
}
