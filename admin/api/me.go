package api

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// userJSON is a user as the API shows it.
type userJSON struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Groups  []string  `json:"groups"`
	TOTP    bool      `json:"totp"`
	Created time.Time `json:"created"`
}

func newUserJSON(u store.User) userJSON {
	return userJSON{Name: u.Name, Role: string(u.Role), Groups: nonNil(u.Groups), TOTP: u.TOTP, Created: u.Created.UTC()}
}

// meJSON is GET /me: who the caller is and how they authenticated.
type meJSON struct {
	User userJSON `json:"user"`
	// Auth is "token" or "session".
	Auth string `json:"auth"`
	// TokenID is the API token used, with its device pattern.
	TokenID      string `json:"tokenId,omitempty"`
	TokenDevices string `json:"tokenDevices,omitempty"`
	// CSRFToken is the session's CSRF token, which requests that change
	// something must send as X-CSRF-Token (session only).
	CSRFToken string `json:"csrfToken,omitempty"`
}

func (a *API) meRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/me", serve: a.getMe},
		{method: http.MethodPost, path: Prefix + "/me/password", serve: a.changeMyPassword},
		{method: http.MethodPost, path: Prefix + "/me/totp", serve: a.beginMyTOTP},
		{method: http.MethodPost, path: Prefix + "/me/totp/confirm", serve: a.confirmMyTOTP},
		{method: http.MethodPost, path: Prefix + "/me/totp/disable", serve: a.disableMyTOTP},
	}
}

func (a *API) getMe(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	// The credential's copy of the user is as it was checked; read it
	// fresh so that a TOTP just enabled shows.
	u, err := a.ops.User(ctx(r), c, c.User.Name)
	if err != nil {
		return err
	}
	how := authenticatedOf(r)
	writeJSON(w, http.StatusOK, meJSON{User: newUserJSON(u), Auth: how.how, TokenID: c.TokenID,
		TokenDevices: c.Devices, CSRFToken: how.csrf})
	return nil
}

// changePasswordRequest is POST /me/password's body.
type changePasswordRequest struct {
	CurrentPassword string `json:"currentPassword"`
	Password        string `json:"password"`
}

func (a *API) changeMyPassword(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req changePasswordRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.CurrentPassword == "":
		return invalid("currentPassword", "currentPassword is required")
	case req.Password == "":
		return invalid("password", "password is required: the new password")
	}
	if err := a.ops.ChangeOwnPassword(ctx(r), c, req.CurrentPassword, req.Password); err != nil {
		return err
	}
	return noContent(w)
}

// totpEnrolmentJSON is POST /me/totp's answer: what the authenticator app
// needs. TOTP is on only once a first code is confirmed.
type totpEnrolmentJSON struct {
	OTPAuthURL string `json:"otpauthUrl"`
	// Secret is the key to type into an app that cannot scan, base32.
	Secret string `json:"secret"`
	// QRCodePNG is the URL as a QR code, a PNG image in base64.
	QRCodePNG string `json:"qrCodePng"`
}

func (a *API) beginMyTOTP(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	otpURL, err := a.ops.BeginTOTP(ctx(r), c, c.User.Name)
	if err != nil {
		return err
	}
	img, err := ops.QRCodePNG(otpURL)
	if err != nil {
		return err
	}
	secret := ""
	if u, err := url.Parse(otpURL); err == nil {
		secret = u.Query().Get("secret")
	}
	writeJSON(w, http.StatusOK, totpEnrolmentJSON{OTPAuthURL: otpURL, Secret: secret, QRCodePNG: base64.StdEncoding.EncodeToString(img)})
	return nil
}

// totpCodeRequest is the body of POST /me/totp/confirm and
// /me/totp/disable.
type totpCodeRequest struct {
	Code string `json:"code"`
}

func (a *API) confirmMyTOTP(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req totpCodeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Code == "" {
		return invalid("code", "code is required: the 6 digits the authenticator app shows")
	}
	if err := a.ops.ConfirmTOTP(ctx(r), c, c.User.Name, req.Code); err != nil {
		return err
	}
	return noContent(w)
}

func (a *API) disableMyTOTP(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req totpCodeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Code == "" {
		return invalid("code", "code is required: a current code from the authenticator app")
	}
	if _, err := a.ops.DisableTOTP(ctx(r), c, c.User.Name, req.Code, false); err != nil {
		return err
	}
	return noContent(w)
}
