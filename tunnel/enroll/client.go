package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds a parsed Retry-After so that no header overflows a
// Duration; callers cap it further to what they are willing to wait.
const maxRetryAfter = 365 * 24 * time.Hour

// Request enrols device at the reflector whose base URL is reflectorURL
// (https://host:port[/base]; wss and ws are read as https and http) with
// key, and returns the device's secret. client carries the TLS and proxy
// settings; nil means http.DefaultClient. Redirects are not followed: the
// key would travel to wherever the reflector points.
//
// Errors: a *RefusedError (errors.Is ErrRefused) for a refusal that will
// not change, a *RetryError for a failure that may pass (network, 408, 429,
// 5xx), the context's error when ctx ends, and a plain error for a bad URL
// or an answer that is not an enrolment answer. Only a *RetryError is worth
// retrying. No error carries the key.
func Request(ctx context.Context, client *http.Client, reflectorURL, key, device string) (secret string, err error) {
	u, err := endpoint(reflectorURL)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(request{Key: key, Device: device})
	if err != nil {
		return "", fmt.Errorf("enrol: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("enrol: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	if client == nil {
		client = http.DefaultClient
	}
	c := *client // shares the transport; only the redirect policy differs
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("enrol: %w", ctx.Err())
		}
		return "", &RetryError{Err: fmt.Errorf("enrol: %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("enrol: %w", ctx.Err())
		}
		return "", &RetryError{Err: fmt.Errorf("enrol: read answer from %s: %w", u, err)}
	}
	if len(data) > maxResponseBody {
		return "", fmt.Errorf("enrol: answer from %s larger than %d bytes: not a reflector's", u, maxResponseBody)
	}

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return parseSecret(data, resp.Header.Get("Content-Type"), u, device)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		after, _ := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return "", &RetryError{After: after, Err: fmt.Errorf("enrol: reflector answered %s%s", resp.Status, colon(message(data)))}
	case code >= 400:
		return "", &RefusedError{Status: code, Message: message(data)}
	case code >= 300 && code < 400:
		return "", fmt.Errorf("enrol: %s redirects to %q (%s): give the reflector's own URL",
			u, resp.Header.Get("Location"), resp.Status)
	default:
		return "", fmt.Errorf("enrol: unexpected answer %s from %s", resp.Status, u)
	}
}

// endpoint turns the reflector's base URL into the enrolment URL.
func endpoint(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("enrol: reflector URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		u.Scheme = "https"
	case "http", "ws":
		u.Scheme = "http"
	default:
		return "", fmt.Errorf("enrol: reflector URL %q: scheme must be https or http", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("enrol: reflector URL %q: no host", base)
	}
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/") + Path
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String(), nil
}

// parseSecret reads a 200 answer. A 200 without a secret for this device is
// not retried: whatever answered is not a reflector's enrolment endpoint
// (a captive portal, a misrouted URL), and retrying would not change that.
func parseSecret(data []byte, contentType, u, device string) (string, error) {
	var r response
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/json" {
		return "", fmt.Errorf("enrol: %s answered 200 with %q, not JSON: not a reflector's enrolment endpoint", u, contentType)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", fmt.Errorf("enrol: %s answered 200 with malformed JSON: %w", u, err)
	}
	if r.Device != device || r.Secret == "" {
		return "", fmt.Errorf("enrol: %s answered 200 without a secret for device %q", u, device)
	}
	return r.Secret, nil
}

// message is the reason an error answer gives: the "error" member of a JSON
// body, or the first line of a plain-text one (a proxy's own answer).
func message(data []byte) string {
	var e errorBody
	if json.Unmarshal(data, &e) == nil {
		return cleanMessage(e.Error)
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("<")) { // an HTML error page says nothing useful in one line
		return ""
	}
	return cleanMessage(string(data))
}

func colon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// ParseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number
// of seconds, or an HTTP date, taken relative to now. A date in the past is
// 0. ok is false for an empty or malformed header.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	} else if errors.Is(err, strconv.ErrRange) {
		return maxRetryAfter, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}
