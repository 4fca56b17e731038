// Package enroll is the enrolment exchange over HTTPS: an agent that has an
// enrolment key but no secret yet POSTs the key and its device id to Path
// under the reflector's base URL, and the reflector registers the device and
// answers with the device's own secret, which the agent keeps from then on.
// Handler is the reflector's end, an http.Handler that decodes the request,
// calls a hook that does the registering (the store, throttling and audit
// are the caller's) and maps its errors to statuses; Request is the agent's
// end, which sorts every failure into a refusal (ErrRefused: retrying cannot
// help) or a RetryError (the reflector is busy, throttling, or unreachable).
// The wire is described in ../tunnel/PROTOCOL.md, "Enrolment".
package enroll

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Path is the enrolment endpoint, appended to the reflector's base URL as
// the tunnel path is.
const Path = "/enroll/v1"

// KeyPrefix starts every enrolment key ("rfe_…"), so an agent can tell a key
// from a device secret pasted in its place before sending anything.
// It equals store.EnrollKeyPrefix (a test checks); the agent does not
// import the store.
const KeyPrefix = "rfe_"

const (
	// MaxRequestBody bounds a request body: a key and a device id fit in it
	// many times over, and the reflector reads no more (413).
	MaxRequestBody = 4 << 10
	// maxResponseBody bounds what the client reads of an answer.
	maxResponseBody = 64 << 10
	// maxMessage bounds an error message the client passes on, in runes.
	maxMessage = 200
)

// request is the body an agent POSTs:
//
//	{"key":"rfe_…","device":"pump-17"}
//
// Unknown members are ignored, so later agents may send more.
type request struct {
	Key    string `json:"key"`
	Device string `json:"device"`
}

// response is the body of a 200 answer. Device repeats the request's.
//
//	{"device":"pump-17","secret":"…"}
type response struct {
	Device string `json:"device"`
	Secret string `json:"secret"`
}

// errorBody is the body of every other answer: one line of JSON.
//
//	{"error":"enrolment key expired"}
type errorBody struct {
	Error string `json:"error"`
}

// cleanMessage makes a message from the network safe to log and print: its
// first line, without control characters, at most maxMessage runes.
func cleanMessage(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxMessage {
		s = string([]rune(s)[:maxMessage]) + "…"
	}
	return s
}
