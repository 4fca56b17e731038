package web

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// My account: every signed-in user's own tokens, TOTP, password and
// sessions.

func (w *Web) meRoutes() map[string]handler {
	return map[string]handler{
		"GET /me":                     w.me,
		"POST /me/tokens":             w.createToken,
		"POST /me/tokens/{id}/revoke": w.revokeToken,
		"POST /me/totp/begin":         w.beginTOTP,
		"POST /me/totp/confirm":       w.confirmTOTP,
		"POST /me/totp/disable":       w.disableTOTP,
		"POST /me/password":           w.changePassword,
		"POST /me/signout-everywhere": w.signOutEverywhere,
	}
}

// tokenExpiries are the expiry choices of a new token, in days; "never"
// besides.
var tokenExpiries = []string{"1", "7", "30", "90", "365", "never"}

// defaultTokenExpiry is the choice the form starts with.
const defaultTokenExpiry = "30"

// meData is /me's view.
type meData struct {
	U         store.User
	Tokens    []store.Token
	Expiries  []string
	TokenForm form
	TOTPForm  form // disabling
	PassForm  form
}

func (w *Web) meView(r *http.Request, v *visit) (*meData, error) {
	u, err := w.ops.User(r.Context(), v.caller, v.caller.User.Name)
	if err != nil {
		return nil, err
	}
	toks, err := w.ops.Tokens(r.Context(), v.caller, u.Name)
	if err != nil {
		return nil, err
	}
	d := &meData{U: u, Tokens: toks, Expiries: tokenExpiries, TokenForm: newForm(), TOTPForm: newForm(), PassForm: newForm()}
	d.TokenForm.Values["expires"] = defaultTokenExpiry
	return d, nil
}

func (w *Web) renderMe(rw http.ResponseWriter, v *visit, status int, d *meData, notice string) {
	w.render(rw, status, "me", v, view{Title: w.brand.Text("me.title"), Nav: "me", Notice: notice, Data: d})
}

func (w *Web) me(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.meView(r, v)
	if err != nil {
		return err
	}
	w.renderMe(rw, v, http.StatusOK, d, w.done(r, "tokenRevoked", "totpOn", "totpOff", "passwordChanged"))
	return nil
}

// tokenData is the page that shows a new token once.
type tokenData struct {
	Token  store.Token
	Secret string
	Curl   string
}

func (w *Web) createToken(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.meView(r, v)
	if err != nil {
		return err
	}
	f := d.TokenForm
	name, devices, expires := strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("devices")), r.PostFormValue("expires")
	f.Values["name"], f.Values["devices"], f.Values["expires"] = name, devices, expires
	n := ops.NewToken{Name: name, Devices: devices}
	if expires != "never" {
		days, err := strconv.Atoi(expires)
		if err != nil || days < 1 {
			f.Errors["expires"] = w.brand.Text("me.badExpiry")
			w.renderMe(rw, v, formAgain, d, "")
			return nil
		}
		n.Expires = time.Now().Add(time.Duration(days) * 24 * time.Hour)
	}
	secret, tok, err := w.ops.CreateToken(r.Context(), v.caller, n)
	if err != nil {
		if f.shown(err, "name") {
			w.renderMe(rw, v, formAgain, d, "")
			return nil
		}
		return err
	}
	w.render(rw, http.StatusOK, "me-token", v, view{Title: w.brand.Text("me.tokenCreated"), Nav: "me",
		Data: tokenData{Token: tok, Secret: secret, Curl: w.curlLine(r, tok, secret)}})
	return nil
}

// curlLine is how to reach a device with a token: the admin host as the
// proxy (as the browser reached it), the device by its subdomain.
func (w *Web) curlLine(r *http.Request, tok store.Token, secret string) string {
	device := tok.Devices
	if device == "" || strings.ContainsAny(device, "*?[\\") {
		device = "DEVICE"
	}
	host := device + ".example.com"
	if u, err := url.Parse(w.cfg.DeviceURL(device)); err == nil && u.Host != "" {
		host = u.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return fmt.Sprintf("curl -x https://%s --proxy-user %s:%s http://%s/", r.Host, tok.User, secret, host)
}

func (w *Web) revokeToken(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if _, err := w.ops.RevokeToken(r.Context(), v.caller, r.PathValue("id")); err != nil {
		return err
	}
	redirect(rw, "/me?done=tokenRevoked")
	return nil
}

// totpData is the enrolment page: the QR code, the key, the code field.
type totpData struct {
	URL  string
	Key  string
	QR   template.URL // data:image/png;base64,…
	Form form
}

func totpView(otpURL string) (*totpData, error) {
	u, err := url.Parse(otpURL)
	if err != nil || u.Scheme != "otpauth" {
		return nil, fmt.Errorf("TOTP enrolment: not an otpauth URL")
	}
	img, err := ops.QRCodePNG(otpURL)
	if err != nil {
		return nil, err
	}
	return &totpData{URL: otpURL, Key: u.Query().Get("secret"), Form: newForm(),
		// A PNG we drew ourselves: safe as an image URL.
		QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(img))}, nil
}

func (w *Web) beginTOTP(rw http.ResponseWriter, r *http.Request, v *visit) error {
	otpURL, err := w.ops.BeginTOTP(r.Context(), v.caller, v.caller.User.Name)
	if err != nil {
		return err
	}
	d, err := totpView(otpURL)
	if err != nil {
		return err
	}
	w.render(rw, http.StatusOK, "me-totp", v, view{Title: w.brand.Text("me.totpTitle"), Nav: "me", Data: d})
	return nil
}

func (w *Web) confirmTOTP(rw http.ResponseWriter, r *http.Request, v *visit) error {
	err := w.ops.ConfirmTOTP(r.Context(), v.caller, v.caller.User.Name, r.PostFormValue("code"))
	if err == nil {
		// The store ended every session of the user, this one included:
		// signing in again now asks for a code.
		redirect(rw, "/login?next="+url.QueryEscape("/me?done=totpOn"))
		return nil
	}
	// The form carries the enrolment's URL to show the code again; the
	// store's pending secret is what the code is checked against.
	d, verr := totpView(r.PostFormValue("url"))
	if verr != nil || !d.Form.shown(err, "code") {
		return err
	}
	if errors.Is(err, store.ErrBadCredentials) {
		d.Form.Errors["code"] = w.brand.Text("me.wrongCode")
	}
	w.render(rw, formAgain, "me-totp", v, view{Title: w.brand.Text("me.totpTitle"), Nav: "me", Data: d})
	return nil
}

func (w *Web) disableTOTP(rw http.ResponseWriter, r *http.Request, v *visit) error {
	_, err := w.ops.DisableTOTP(r.Context(), v.caller, v.caller.User.Name, r.PostFormValue("code"), false)
	if err == nil {
		redirect(rw, "/me?done=totpOff")
		return nil
	}
	d, verr := w.meView(r, v)
	if verr != nil {
		return verr
	}
	if !d.TOTPForm.shown(err, "code") {
		return err
	}
	if errors.Is(err, store.ErrBadCredentials) {
		d.TOTPForm.Errors["code"] = w.brand.Text("me.wrongCode")
	}
	w.renderMe(rw, v, formAgain, d, "")
	return nil
}

func (w *Web) changePassword(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.meView(r, v)
	if err != nil {
		return err
	}
	f := d.PassForm
	current, password := r.PostFormValue("currentPassword"), r.PostFormValue("password")
	switch {
	case password == "":
		f.Errors["password"] = w.brand.Text("me.passwordEmpty")
	case password != r.PostFormValue("password2"):
		f.Errors["password2"] = w.brand.Text("me.passwordMismatch")
	}
	if len(f.Errors) == 0 {
		err = w.ops.ChangeOwnPassword(r.Context(), v.caller, current, password)
		if err == nil {
			// The store ended every session of the user, this one
			// included: whoever knew the old password may have signed in.
			redirect(rw, "/login?next="+url.QueryEscape("/me?done=passwordChanged"))
			return nil
		}
		if !f.shown(err, "password") {
			return err
		}
		if _, ok := f.Errors["currentPassword"]; ok {
			f.Errors["currentPassword"] = w.brand.Text("me.wrongPassword")
		}
	}
	w.renderMe(rw, v, formAgain, d, "")
	return nil
}

func (w *Web) signOutEverywhere(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if _, err := w.ops.SignOutEverywhere(r.Context(), v.caller); err != nil {
		return err
	}
	// This browser's cookie names a session no more; the sign-in page
	// clears it.
	redirect(rw, "/login")
	return nil
}
