package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Error codes of the API, in {"error": {"code": …}}. Each has one status.
const (
	codeInvalid         = "invalid"                // 400: a field is wrong; "field" names it
	codeBadRequest      = "bad_request"            // 400: the request as a whole is wrong (JSON syntax)
	codeUnauthorized    = "unauthorized"           // 401
	codeForbidden       = "forbidden"              // 403
	codeNotFound        = "not_found"              // 404
	codeMethod          = "method_not_allowed"     // 405
	codeConflict        = "conflict"               // 409: the id is taken, the record in use, the state not right
	codeQuota           = "quota_exceeded"         // 409: a group is full
	codeTooLarge        = "payload_too_large"      // 413
	codeMediaType       = "unsupported_media_type" // 415
	codeTooManyRequests = "too_many_requests"      // 429, with Retry-After
	codeInternal        = "internal"               // 500
)

// Errors of the API itself, beside the operations'.
var (
	errNoRoute = errors.New("no such API path")
	errMethod  = errors.New("method not allowed here")
)

// apiError is an error that knows its answer.
type apiError struct {
	status int
	code   string
	field  string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// badRequest is a 400 about the whole request.
func badRequest(msg string) error { return &apiError{http.StatusBadRequest, codeBadRequest, "", msg} }

// invalid is a 400 about one field.
func invalid(field, msg string) error {
	return &apiError{http.StatusBadRequest, codeInvalid, field, msg}
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// answer maps err to its status, code, field and message. Messages of
// the store's and the operations' errors name the step and the record and
// never a secret, so they are shown; anything else is an internal error,
// logged and not shown.
func answer(err error) (status int, d errorDetail) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, errorDetail{Code: ae.code, Message: ae.msg, Field: ae.field}
	}
	d.Message = err.Error()
	var fe *store.FieldError
	hasField := errors.As(err, &fe)
	if hasField {
		d.Field = fe.Field
	}
	var locked *auth.LockedOutError
	switch {
	case errors.Is(err, errNoCredentials), errors.Is(err, errBadToken):
		return http.StatusUnauthorized, errorDetail{Code: codeUnauthorized, Message: err.Error()}
	case errors.As(err, &locked):
		return http.StatusTooManyRequests, errorDetail{Code: codeTooManyRequests, Message: err.Error()}
	case errors.Is(err, errCSRF), errors.Is(err, errCrossOrigin), errors.Is(err, ops.ErrForbidden):
		d.Code, d.Field = codeForbidden, ""
		return http.StatusForbidden, d
	case errors.Is(err, errNoRoute):
		return http.StatusNotFound, errorDetail{Code: codeNotFound, Message: err.Error()}
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, errorDetail{Code: codeMethod, Message: err.Error()}
	case errors.Is(err, store.ErrQuota):
		d.Code = codeQuota
		return http.StatusConflict, d
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotEmpty),
		errors.Is(err, ops.ErrTOTPEnabled), errors.Is(err, ops.ErrTOTPNotEnabled), errors.Is(err, ops.ErrNoEnrolment):
		d.Code = codeConflict
		return http.StatusConflict, d
	case hasField:
		// A field at fault: a bad value, a group named that does not
		// exist, a wrong TOTP code or current password.
		d.Code = codeInvalid
		return http.StatusBadRequest, d
	case errors.Is(err, store.ErrNotFound):
		d.Code = codeNotFound
		return http.StatusNotFound, d
	case errors.Is(err, store.ErrInvalid):
		d.Code = codeInvalid
		return http.StatusBadRequest, d
	}
	return http.StatusInternalServerError, errorDetail{Code: codeInternal, Message: "internal error"}
}

// writeError answers r with err.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, d := answer(err)
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="reflector"`)
	case http.StatusTooManyRequests:
		var locked *auth.LockedOutError
		if errors.As(err, &locked) {
			h.Set("Retry-After", tunnel.RetryAfterSeconds(locked.RetryAfter()))
		}
	case http.StatusInternalServerError:
		if errors.Is(err, context.Canceled) {
			return // the client went away: nobody to answer
		}
		log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{d})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // a write error means the client is gone
}

// noContent answers 204.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}
