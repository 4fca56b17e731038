package enroll

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestEnrollsAgainstTheHandler(t *testing.T) {
	r := newTestReflector(t)
	key := r.key(t, 0)
	secret, err := Request(context.Background(), r.srv.Client(), r.srv.URL, key, "pump-17")
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if _, err := r.store.CheckDeviceSecret(context.Background(), "pump-17", secret); err != nil {
		t.Fatalf("the secret Request returned is refused: %v", err)
	}

	// The same device again: a refusal that will not change.
	_, err = Request(context.Background(), r.srv.Client(), r.srv.URL+"/", key, "pump-17")
	var re *RefusedError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &re) || re.Status != http.StatusConflict {
		t.Fatalf("second enrolment: %v, want a 409 refusal", err)
	}
	if re.Message != "device id already registered" {
		t.Errorf("refusal message %q", re.Message)
	}
	if strings.Contains(err.Error(), key) {
		t.Errorf("error %q carries the key", err)
	}

	_, err = Request(context.Background(), r.srv.Client(), r.srv.URL, "rfe_garbage", "pump-18")
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
		t.Fatalf("garbage key: %v, want a 401 refusal", err)
	}
}

// fake answers every request with the status, headers and body given, and
// counts requests.
func fake(t *testing.T, status int, header map[string]string, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRequestSortsAnswersIntoRefusalsAndRetries(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		refused int           // the RefusedError status, or 0
		retry   bool          // a RetryError
		after   time.Duration // its After
		msg     string        // in the error's text
	}{
		{name: "401", status: 401, body: `{"error":"enrolment key expired"}`, refused: 401, msg: "enrolment key expired"},
		{name: "403", status: 403, body: `{"error":"enrolment quota exhausted"}`, refused: 403, msg: "quota"},
		{name: "409", status: 409, body: `{"error":"device id already registered"}`, refused: 409, msg: "already registered"},
		{name: "400", status: 400, body: `{"error":"invalid device id"}`, refused: 400, msg: "invalid device id"},
		{name: "404 from something else", status: 404, body: "404 page not found\n", refused: 404, msg: "404 page not found"},
		{name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "2"}, body: `{"error":"too many failed attempts; retry later"}`, retry: true, after: 2 * time.Second, msg: "429"},
		{name: "429 without Retry-After", status: 429, retry: true},
		{name: "503 with Retry-After", status: 503, header: map[string]string{"Retry-After": "7"}, retry: true, after: 7 * time.Second},
		{name: "502 from a proxy", status: 502, body: "<html><body>Bad Gateway</body></html>", retry: true, msg: "502 Bad Gateway"},
		{name: "408", status: 408, retry: true},
		{name: "control characters in the message", status: 400, body: `{"error":"bad\u001b[31m red\nsecond line"}`, refused: 400, msg: "bad[31m red"},
		{name: "redirect is not followed", status: 307, header: map[string]string{"Location": "https://elsewhere.example/"}, msg: "elsewhere.example"},
		{name: "200 without JSON", status: 200, body: "<html>captive portal</html>", msg: "not JSON"},
		{name: "200 for another device", status: 200, header: jsonCT, body: `{"device":"other","secret":"s"}`, msg: "without a secret"},
		{name: "200 without a secret", status: 200, header: jsonCT, body: `{"device":"pump-17"}`, msg: "without a secret"},
		{name: "200 huge", status: 200, header: jsonCT, body: strings.Repeat(" ", maxResponseBody+1), msg: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := fake(t, tt.status, tt.header, tt.body)
			_, err := Request(context.Background(), srv.Client(), srv.URL, "rfe_key", "pump-17")
			if err == nil {
				t.Fatal("no error")
			}
			var re *RefusedError
			if got := errors.As(err, &re); got != (tt.refused != 0) || (got && re.Status != tt.refused) {
				t.Errorf("error %v: refused=%v, want refusal %d", err, got, tt.refused)
			}
			if errors.Is(err, ErrRefused) != (tt.refused != 0) {
				t.Errorf("errors.Is(%v, ErrRefused) = %v", err, !(tt.refused != 0))
			}
			var rt *RetryError
			if got := errors.As(err, &rt); got != tt.retry {
				t.Errorf("error %v: retry=%v, want %v", err, got, tt.retry)
			} else if got && rt.After != tt.after {
				t.Errorf("After %v, want %v", rt.After, tt.after)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if strings.ContainsAny(err.Error(), "\x1b\n") || strings.Contains(err.Error(), "second line") {
				t.Errorf("error %q passes control characters or more than one line on", err)
			}
			if n.Load() != 1 {
				t.Errorf("%d requests, want 1", n.Load())
			}
		})
	}
}

func TestRequestRetriesNetworkErrors(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	url, client := srv.URL, srv.Client()
	srv.Close()
	_, err := Request(context.Background(), client, url, "rfe_key", "pump-17")
	var rt *RetryError
	if !errors.As(err, &rt) || rt.After != 0 {
		t.Fatalf("closed server: %v, want a RetryError without After", err)
	}
}

func TestRequestReturnsTheContextErrorWhenCancelled(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Request(ctx, srv.Client(), srv.URL, "rfe_key", "pump-17")
	var rt *RetryError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rt) {
		t.Fatalf("cancelled request: %v, want the context's error, not a RetryError", err)
	}
}

func TestRequestURL(t *testing.T) {
	tests := []struct{ base, want string }{
		{"https://r.example:8443", "https://r.example:8443/enroll/v1"},
		{"https://r.example:8443/", "https://r.example:8443/enroll/v1"},
		{"wss://r.example/base/", "https://r.example/base/enroll/v1"},
		{"ws://127.0.0.1:8080", "http://127.0.0.1:8080/enroll/v1"},
		{"https://user:pw@r.example/?q=1#f", "https://r.example/enroll/v1"},
	}
	for _, tt := range tests {
		if got, err := endpoint(tt.base); err != nil || got != tt.want {
			t.Errorf("endpoint(%q) = %q, %v; want %q", tt.base, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://r.example", "https://", "://"} {
		if _, err := endpoint(bad); err == nil {
			t.Errorf("endpoint(%q) accepted", bad)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"99999999999999999999999", maxRetryAfter, true},
		{"9999999999", maxRetryAfter, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		if got, ok := ParseRetryAfter(tt.in, now); got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"2", "Sun, 01 Mar 2026 12:00:00 GMT", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, _ := ParseRetryAfter(s, time.Now())
		if d < 0 || d > maxRetryAfter {
			t.Errorf("ParseRetryAfter(%q) = %v, outside [0, %v]", s, d, maxRetryAfter)
		}
	})
}
