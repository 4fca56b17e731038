package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
)

// maxBody bounds a request's JSON body. The largest request, a device with
// its groups and ports, is well under a kilobyte.
const maxBody = 64 << 10

// bodyTimeout bounds how long a client may take to send its body.
const bodyTimeout = 10 * time.Second

// decode reads r's JSON body into v: at most maxBody bytes, of type
// application/json, one value, no field v does not have. Errors are 400s
// that name the field where one is at fault, 413 or 415.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &apiError{http.StatusUnsupportedMediaType, codeMediaType, "", "request body must be application/json"}
		}
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyTimeout)) // ErrNotSupported under tests' recorders: no deadline
	defer rc.SetReadDeadline(time.Time{})
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge, "", fmt.Sprintf("request body larger than %d bytes", maxBody)}
	case err != nil:
		return badRequest("reading the request body: " + err.Error())
	case len(bytes.TrimSpace(body)) == 0:
		return badRequest("request body missing: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return badRequest("request body holds more than one JSON value")
	}
	return nil
}

// decodeError turns a json.Decoder error into a 400 that names the field
// at fault when there is one.
func decodeError(err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		return invalid(field, fmt.Sprintf("%s: want %s, not a JSON %s", orBody(field), jsonType(typeErr.Type.String()), typeErr.Value))
	case errors.As(err, &syntaxErr):
		return badRequest(fmt.Sprintf("request body is not JSON: %v (at byte %d)", syntaxErr, syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is cut short")
	}
	// encoding/json has no error type for an unknown field, only this
	// text (DisallowUnknownFields).
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field, _ := strconv.Unquote(name)
		return invalid(field, fmt.Sprintf("unknown field %s", name))
	}
	return badRequest("request body: " + err.Error())
}

func orBody(field string) string {
	if field == "" {
		return "request body"
	}
	return field
}

// jsonType names a Go type as a JSON client knows it.
func jsonType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "api."), strings.HasPrefix(goType, "struct"):
		return "an object"
	case goType == "string", goType == "*string":
		return "a string"
	case goType == "bool", goType == "*bool":
		return "true or false"
	case strings.Contains(goType, "int"):
		return "a whole number in range"
	}
	return goType
}

// Query parameters.

// queryInt is the integer parameter name, def when absent.
func queryInt(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, invalid(name, fmt.Sprintf("%s %q: want a whole number", name, s))
	}
	return n, nil
}

// queryLimit is a listing's page size, the limit parameter: 1 to
// ops.MaxPage, ops.DefaultPage when absent.
func queryLimit(r *http.Request) (int, error) {
	n, err := queryInt(r, "limit", ops.DefaultPage)
	if err == nil && (n < 1 || n > ops.MaxPage) {
		err = invalid("limit", fmt.Sprintf("limit %d: want 1-%d", n, ops.MaxPage))
	}
	return n, err
}

// queryBool is the boolean parameter name: nil when absent.
func queryBool(r *http.Request, name string) (*bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, invalid(name, fmt.Sprintf("%s %q: want true or false", name, s))
	}
	return &b, nil
}

// queryTime is the RFC 3339 time parameter name: zero when absent.
func queryTime(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalid(name, fmt.Sprintf("%s %q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", name, s))
	}
	return t, nil
}

// Cursors are opaque to clients: a kind and a position, base64url. The
// kind keeps a cursor of one listing from being taken by another.

// encodeCursor returns the cursor for position pos of listing kind; ""
// for no position (the end).
func encodeCursor(kind, pos string) string {
	if pos == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + pos))
}

// decodeCursor returns the position of the cursor parameter for listing
// kind, "" when absent.
func decodeCursor(r *http.Request, kind string) (string, error) {
	s := r.URL.Query().Get("cursor")
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	pos, ok := strings.CutPrefix(string(b), kind+":")
	if err != nil || !ok || pos == "" {
		return "", invalid("cursor", "cursor is not one this listing gave")
	}
	return pos, nil
}

// page is the JSON of every listing: a page of items and the cursor of
// the next, absent at the end.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}
