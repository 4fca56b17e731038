package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// testReflector is an enrolment endpoint backed by a real store, on a TLS
// test server.
type testReflector struct {
	store *store.Store
	srv   *httptest.Server
	logs  *lockedBuffer
}

func newTestReflector(t *testing.T) *testReflector {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddGroup(store.Group{Name: "field"}); err != nil {
		t.Fatalf("AddGroup: %v", err)
	}
	r := &testReflector{store: st, logs: new(lockedBuffer)}
	mux := http.NewServeMux()
	mux.Handle(Path, &Handler{
		Enroll: func(_ context.Context, _ *http.Request, key, device string) (string, error) {
			_, secret, err := st.Enroll(key, device)
			return secret, storeToEnroll(err)
		},
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	r.srv = httptest.NewTLSServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

// key makes an enrolment key of group "field" for at most max devices.
func (r *testReflector) key(t *testing.T, max int) string {
	t.Helper()
	key, _, err := r.store.CreateEnrollKey(store.EnrollKey{Group: "field", Max: max})
	if err != nil {
		t.Fatalf("CreateEnrollKey: %v", err)
	}
	return key
}

// post sends body to the enrolment endpoint and returns the status, the
// answer's headers and its decoded body.
func (r *testReflector) post(t *testing.T, body string) (int, http.Header, map[string]string) {
	t.Helper()
	return r.do(t, http.MethodPost, "application/json", strings.NewReader(body), int64(len(body)))
}

func (r *testReflector) do(t *testing.T, method, contentType string, body io.Reader, length int64) (int, http.Header, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+Path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object of strings: %q", resp.StatusCode, raw)
	}
	if bytes.Count(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) != 0 {
		t.Errorf("answer is not one line: %q", raw)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q, want application/json", got)
	}
	return resp.StatusCode, resp.Header, m
}

func enrollBody(key, device string) string {
	b, _ := json.Marshal(request{Key: key, Device: device})
	return string(b)
}

func TestEnrollWithAValidKeyReturnsASecretTheStoreAccepts(t *testing.T) {
	r := newTestReflector(t)
	key := r.key(t, 0)
	status, h, m := r.post(t, enrollBody(key, "pump-17"))
	if status != http.StatusOK {
		t.Fatalf("status %d %v, want 200", status, m)
	}
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", h.Get("Cache-Control"))
	}
	if m["device"] != "pump-17" || m["secret"] == "" {
		t.Fatalf("answer %v, want device pump-17 and a secret", m)
	}
	d, err := r.store.CheckDeviceSecret(context.Background(), "pump-17", m["secret"])
	if err != nil {
		t.Fatalf("the enrolled secret is refused: %v", err)
	}
	if len(d.Groups) != 1 || d.Groups[0] != "field" {
		t.Errorf("enrolled device in groups %v, want [field]", d.Groups)
	}
	if strings.Contains(r.logs.String(), key) || strings.Contains(r.logs.String(), m["secret"]) {
		t.Errorf("key or secret logged:\n%s", r.logs.String())
	}
}

func TestEnrollStatusesWithARealStore(t *testing.T) {
	r := newTestReflector(t)
	once := r.key(t, 1)
	if status, _, m := r.post(t, enrollBody(once, "pump-1")); status != http.StatusOK {
		t.Fatalf("first enrolment: %d %v", status, m)
	}
	unlimited := r.key(t, 0)
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"key used up", enrollBody(once, "pump-2"), http.StatusForbidden},
		{"device id taken", enrollBody(unlimited, "pump-1"), http.StatusConflict},
		{"garbage key", enrollBody("rfe_garbage", "pump-3"), http.StatusUnauthorized},
		{"not a key at all", enrollBody("\x00\xff binary", "pump-3"), http.StatusUnauthorized},
		{"a key with its last digit changed", enrollBody(flipLast(unlimited), "pump-3"), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, m := r.post(t, tt.body)
			if status != tt.status {
				t.Errorf("status %d %v, want %d", status, m, tt.status)
			}
			if m["error"] == "" {
				t.Errorf("answer %v without an error reason", m)
			}
		})
	}
	if strings.Contains(r.logs.String(), once) || strings.Contains(r.logs.String(), unlimited) {
		t.Errorf("a key was logged:\n%s", r.logs.String())
	}
}

func flipLast(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		return s[:len(s)-1] + "1"
	}
	return s[:len(s)-1] + "0"
}

func TestEnrollMalformedRequests(t *testing.T) {
	r := newTestReflector(t)
	huge := `{"key":"rfe_` + strings.Repeat("a", MaxRequestBody) + `","device":"pump-17"}`
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		length      int64 // -1: chunked, no Content-Length
		status      int
	}{
		{"GET", http.MethodGet, "", "", 0, http.StatusMethodNotAllowed},
		{"PUT", http.MethodPut, "application/json", enrollBody("rfe_x", "pump-17"), 0, http.StatusMethodNotAllowed},
		{"bad JSON", http.MethodPost, "application/json", `{"key":`, 0, http.StatusBadRequest},
		{"binary garbage", http.MethodPost, "application/json", "\x00\x01\xfe\xff", 0, http.StatusBadRequest},
		{"empty body", http.MethodPost, "application/json", "", 0, http.StatusBadRequest},
		{"JSON array", http.MethodPost, "application/json", `["rfe_x","pump-17"]`, 0, http.StatusBadRequest},
		{"wrong member type", http.MethodPost, "application/json", `{"key":1,"device":"pump-17"}`, 0, http.StatusBadRequest},
		{"two objects", http.MethodPost, "application/json", enrollBody("rfe_x", "pump-17") + "{}", 0, http.StatusBadRequest},
		{"no key", http.MethodPost, "application/json", `{"device":"pump-17"}`, 0, http.StatusBadRequest},
		{"no device", http.MethodPost, "application/json", `{"key":"rfe_x"}`, 0, http.StatusBadRequest},
		{"upper-case device", http.MethodPost, "application/json", enrollBody("rfe_x", "Pump-17"), 0, http.StatusBadRequest},
		{"device too long", http.MethodPost, "application/json", enrollBody("rfe_x", strings.Repeat("a", 64)), 0, http.StatusBadRequest},
		{"huge body", http.MethodPost, "application/json", huge, 0, http.StatusRequestEntityTooLarge},
		{"huge body, chunked", http.MethodPost, "application/json", huge, -1, http.StatusRequestEntityTooLarge},
		{"form body", http.MethodPost, "application/x-www-form-urlencoded", "key=rfe_x&device=pump-17", 0, http.StatusUnsupportedMediaType},
		{"bad content type", http.MethodPost, "a/b/c;;", enrollBody("rfe_x", "pump-17"), 0, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			length := tt.length
			if length == 0 {
				length = int64(len(tt.body))
			}
			var body io.Reader = strings.NewReader(tt.body)
			if length < 0 {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			status, h, m := r.do(t, tt.method, tt.contentType, body, length)
			if status != tt.status {
				t.Errorf("status %d %v, want %d", status, m, tt.status)
			}
			if m["error"] == "" {
				t.Errorf("answer %v without an error reason", m)
			}
			if status == http.StatusMethodNotAllowed && h.Get("Allow") != http.MethodPost {
				t.Errorf("405 with Allow %q, want POST", h.Get("Allow"))
			}
		})
	}
}

func TestEnrollContentTypeIsCheckedLoosely(t *testing.T) {
	for _, ct := range []string{"", "application/json", "Application/JSON; charset=utf-8", "application/vnd.reflector+json"} {
		var got string
		h := &Handler{Enroll: func(_ context.Context, _ *http.Request, key, device string) (string, error) {
			got = device
			return "s", nil
		}}
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(enrollBody("rfe_x", "pump-17")))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || got != "pump-17" {
			t.Errorf("Content-Type %q: status %d, enrolled %q; want 200 for pump-17", ct, rec.Code, got)
		}
	}
}

func TestEnrollErrorsMapToStatuses(t *testing.T) {
	wrap := func(sentinel error) error { return fmt.Errorf("enroll device %q: %w", "pump-17", sentinel) }
	tests := []struct {
		err        error
		status     int
		message    string
		retryAfter string
	}{
		{wrap(ErrKeyInvalid), 401, "enrolment key not valid", ""},
		{wrap(ErrKeyExpired), 401, "enrolment key expired", ""},
		{fmt.Errorf("x: %w: %w", ErrKeyInvalid, ErrKeyExpired), 401, "enrolment key expired", ""},
		{wrap(ErrQuota), 403, "", ""},
		{wrap(ErrDeviceExists), 409, "device id already registered", ""},
		{wrap(ErrDeviceInvalid), 400, "", ""},
		{lockedOut(2500 * time.Millisecond), 429, "", "3"},
		{fmt.Errorf("throttled: %w", lockedOut(time.Hour)), 429, "", "3600"},
		{errors.New("disk on fire"), 503, "reflector cannot enrol devices now", ""},
		{wrap(store.ErrNotFound), 503, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			h := &Handler{Enroll: func(context.Context, *http.Request, string, string) (string, error) { return "", tt.err }}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(enrollBody("rfe_x", "pump-17"))))
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			var m errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Error == "" {
				t.Fatalf("body %q, want {\"error\":…}", rec.Body.String())
			}
			if tt.message != "" && m.Error != tt.message {
				t.Errorf("message %q, want %q", m.Error, tt.message)
			}
			if strings.Contains(m.Error, "pump-17") || strings.Contains(m.Error, "disk") {
				t.Errorf("message %q passes on the store's error", m.Error)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

func TestEnrollWithoutAnEnrollFunctionIs503(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Handler{}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(enrollBody("rfe_x", "pump-17"))))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", rec.Code)
	}
}

func TestEnrollHandlerNeverLogsTheKey(t *testing.T) {
	var logs lockedBuffer
	const key = "rfe_0123456789abcdef_secretpart"
	h := &Handler{
		Enroll: func(_ context.Context, _ *http.Request, key, _ string) (string, error) {
			return "", fmt.Errorf("careless store quoting the key %q: %w", key, ErrKeyInvalid)
		},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(enrollBody(key, "pump-17"))))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", rec.Code)
	}
	if strings.Contains(logs.String(), "secretpart") || !strings.Contains(logs.String(), "pump-17") {
		t.Errorf("log leaks the key or lacks the device:\n%s", logs.String())
	}
}

func FuzzHandlerBody(f *testing.F) {
	f.Add([]byte(enrollBody("rfe_x", "pump-17")), "application/json")
	f.Add([]byte(`{"key":`), "")
	f.Add([]byte(`{"key":"rfe_x","device":"pump-17"}{}`), "application/json; charset=utf-8")
	f.Add([]byte("\x00\xff"), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		h := &Handler{Enroll: func(_ context.Context, _ *http.Request, key, device string) (string, error) {
			if key == "" || device == "" {
				t.Errorf("Enroll called with key %q, device %q", key, device)
			}
			return "secret", nil
		}}
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 413, 415:
		default:
			t.Errorf("status %d for %q", rec.Code, body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Errorf("answer %q is not JSON", rec.Body.String())
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// storeToEnroll maps the store's enrolment errors as the server does.
func storeToEnroll(err error) error {
	for _, m := range []struct{ from, to error }{
		{store.ErrExpired, ErrKeyExpired},
		{store.ErrBadCredentials, ErrKeyInvalid},
		{store.ErrQuota, ErrQuota},
		{store.ErrExists, ErrDeviceExists},
		{store.ErrInvalid, ErrDeviceInvalid},
	} {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%w: %w", m.to, err)
		}
	}
	return err
}

func TestKeyPrefixIsTheStores(t *testing.T) {
	if KeyPrefix != store.EnrollKeyPrefix {
		t.Fatalf("enroll.KeyPrefix %q, store.EnrollKeyPrefix %q", KeyPrefix, store.EnrollKeyPrefix)
	}
}

// lockedOut is a tunnel.Throttled error, as the server's login limiter returns.
type lockedOut time.Duration

func (d lockedOut) Error() string             { return "too many failed attempts" }
func (d lockedOut) RetryAfter() time.Duration { return time.Duration(d) }
