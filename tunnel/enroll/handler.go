package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// Handler is the reflector's end of the enrolment exchange, an http.Handler
// for Path. It answers every failure itself, as one line of JSON, and calls
// Enroll only with a well-formed request: a non-empty key and a valid device
// id.
type Handler struct {
	// Enroll registers device with key and returns the device's new secret.
	// r is the request, for the client's address, throttling and the audit
	// log. Its error is mapped with errors.Is/As: ErrKeyExpired and
	// ErrKeyInvalid → 401, ErrQuota → 403, ErrDeviceExists → 409,
	// ErrDeviceInvalid → 400, a tunnel.Throttled → 429 with
	// Retry-After, anything else → 503. Required: a nil Enroll answers 503.
	Enroll func(ctx context.Context, r *http.Request, key, device string) (secret string, err error)
	// Logger; nil discards. Keys and secrets are never logged.
	Logger *slog.Logger
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// ServeHTTP answers one enrolment request. The checks that need no store
// come first, so malformed requests never reach Enroll (nor count as failed
// attempts there).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.logger().With("remote", r.RemoteAddr)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "enrolment takes POST")
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "enrolment takes Content-Type: application/json")
		return
	}
	if r.ContentLength > MaxRequestBody {
		writeError(w, http.StatusRequestEntityTooLarge, "enrolment request too large")
		return
	}
	// Anybody may post here: the body must arrive within bodyTimeout
	// (issue 15, item 7). ErrNotSupported (a ResponseRecorder) reads
	// without a deadline.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	req, status, msg := decodeRequest(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if status != 0 {
		// The body may be unread or the connection's read side spent:
		// do not wait for the rest of it.
		w.Header().Set("Connection", "close")
		writeError(w, status, msg)
		return
	}
	// What follows (the store, its throttle) is not the client's to hurry.
	rc.SetReadDeadline(time.Time{})
	log = log.With("device", req.Device)
	if h.Enroll == nil {
		log.Error("enrolment handler has no Enroll function")
		writeError(w, http.StatusServiceUnavailable, "reflector cannot enrol devices now")
		return
	}
	secret, err := h.Enroll(r.Context(), r, req.Key, req.Device)
	if err == nil && secret == "" {
		err = errors.New("enrol: no secret returned")
	}
	if err != nil {
		status, msg := errorStatus(err)
		// The store's messages are written for logs, but a key must never
		// reach one, whoever formatted the error.
		text := strings.ReplaceAll(err.Error(), req.Key, "[key]")
		if status == http.StatusServiceUnavailable {
			log.Error("enrolment failed", "err", text)
		} else {
			log.Warn("enrolment refused", "status", status, "err", text)
		}
		tunnel.RetryLater(w.Header(), err) // sets Retry-After for a 429
		writeError(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, response{Device: req.Device, Secret: secret})
	log.Info("device enrolled")
}

// bodyTimeout bounds the reading of a request body: without it a client
// that announces 4 KiB and sends none holds its connection and a goroutine
// for as long as it likes. A variable for the tests.
var bodyTimeout = 10 * time.Second

// isJSON checks a Content-Type loosely: absent, application/json or any
// "+json" type, parameters and case ignored. A form or multipart body is
// refused with a status that says what to send.
func isJSON(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// decodeRequest reads one JSON object and nothing after it. It returns the
// status and message to answer on failure, status 0 on success.
func decodeRequest(body io.Reader) (request, int, string) {
	var req request
	dec := json.NewDecoder(body)
	err := dec.Decode(&req)
	if err == nil {
		// Exactly one value: trailing bytes are a malformed request.
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		return req, http.StatusRequestEntityTooLarge, "enrolment request too large"
	case errors.As(err, &ne) && ne.Timeout():
		return req, http.StatusRequestTimeout, "enrolment request body not received in time"
	case err != nil:
		return req, http.StatusBadRequest, "enrolment request is not a JSON object {\"key\":…,\"device\":…}"
	case req.Key == "":
		return req, http.StatusBadRequest, "enrolment key missing"
	case req.Device == "":
		return req, http.StatusBadRequest, "device id missing"
	case !tunnel.ValidDeviceID(req.Device):
		return req, http.StatusBadRequest, "device id must be a lower-case DNS label: 1 to 63 of a-z, 0-9 and '-', not beginning or ending with '-'"
	}
	return req, 0, ""
}

// errorStatus maps an Enroll error to its status and the reason the client
// is told. The store's own message stays in the log: it may name records
// the client has no business knowing about.
func errorStatus(err error) (int, string) {
	if msg, ok := tunnel.RetryLater(nil, err); ok {
		return http.StatusTooManyRequests, msg
	}
	switch {
	// Before ErrKeyInvalid: an expired key may wrap both.
	case errors.Is(err, ErrKeyExpired):
		return http.StatusUnauthorized, "enrolment key expired"
	case errors.Is(err, ErrKeyInvalid):
		return http.StatusUnauthorized, "enrolment key not valid"
	case errors.Is(err, ErrQuota):
		return http.StatusForbidden, "enrolment quota exhausted: the key is used up or its group is full"
	case errors.Is(err, ErrDeviceExists):
		return http.StatusConflict, "device id already registered"
	case errors.Is(err, ErrDeviceInvalid):
		return http.StatusBadRequest, "invalid device id"
	}
	return http.StatusServiceUnavailable, "reflector cannot enrol devices now"
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers v as one line of JSON. Answers carry a secret or concern
// a credential, so no cache may keep them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // our own plain structs of strings: cannot fail
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
