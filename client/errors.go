package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Why a reflector refused a request or could not be reached. Errors of this
// package wrap one of them where it applies; test them with errors.Is.
var (
	// ErrBadCredentials: the reflector refused the user and token (407
	// from the proxy, 401 from the API).
	ErrBadCredentials = errors.New("the reflector refused the credentials")
	// ErrNoAccess: 403 from the proxy: no access to the device, or the
	// port is not allowed (the reflector's reason says which).
	ErrNoAccess = errors.New("refused by the reflector")
	// ErrUnknownDevice: 404, no such device (or one the user may not see).
	ErrUnknownDevice = errors.New("unknown device")
	// ErrDeviceUnavailable: 502, the device is offline or refused the
	// connection (the reason says which).
	ErrDeviceUnavailable = errors.New("device unavailable")
	// ErrDeviceTimeout: 504, the device did not answer in time.
	ErrDeviceTimeout = errors.New("device timeout")
	// ErrBusy: 429 or 503, try again later.
	ErrBusy = errors.New("the reflector is busy")
	// ErrUnreachable: no TCP or TLS connection to the reflector (or to the
	// proxy in front of it).
	ErrUnreachable = errors.New("cannot reach the reflector")
	// ErrFingerprintChanged: the reflector's certificate is not the one
	// trusted before for its address.
	ErrFingerprintChanged = errors.New("the reflector's certificate fingerprint has changed")
	// ErrUnknownCertificate: the reflector's certificate is signed by no
	// known authority and its fingerprint is neither pinned nor known.
	ErrUnknownCertificate = errors.New("the reflector's certificate is not trusted")
	// ErrNotLoggedIn: no credentials for the reflector.
	ErrNotLoggedIn = errors.New("not logged in")
)

// StatusError is a refusal by the reflector: its HTTP status and the
// one-line reason it gave. It unwraps to the sentinel of its status.
type StatusError struct {
	Status int
	Reason string
}

func (e *StatusError) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = strings.ToLower(http.StatusText(e.Status))
	}
	switch sentinel := e.Unwrap(); sentinel {
	case ErrBadCredentials, ErrBusy:
		// The reflector's reason ("proxy authentication required")
		// does not say whose fault it is.
		return fmt.Sprintf("%v (%d %s)", sentinel, e.Status, reason)
	}
	return fmt.Sprintf("%s (%d)", reason, e.Status)
}

// Unwrap returns the sentinel for the status, nil for one without.
func (e *StatusError) Unwrap() error {
	switch e.Status {
	case http.StatusProxyAuthRequired, http.StatusUnauthorized:
		return ErrBadCredentials
	case http.StatusForbidden:
		return ErrNoAccess
	case http.StatusNotFound:
		return ErrUnknownDevice
	case http.StatusBadGateway:
		return ErrDeviceUnavailable
	case http.StatusGatewayTimeout:
		return ErrDeviceTimeout
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return ErrBusy
	}
	return nil
}

// FingerprintError is a certificate the client refuses: Got is its
// fingerprint, Known the one trusted before for Addr (empty when none was).
type FingerprintError struct {
	Addr, Known, Got string
	// Store is the known-reflectors file that holds Known.
	Store string
}

func (e *FingerprintError) Error() string {
	if e.Known == "" {
		return fmt.Sprintf("the certificate of %s is signed by no known authority; its fingerprint is %s: "+
			"run 'remote login' to trust it, or pass --fingerprint %s (or --ca-file)", e.Addr, e.Got, e.Got)
	}
	return fmt.Sprintf("REFUSED: the certificate of %s has CHANGED: it was %s and is now %s. "+
		"Someone may be intercepting the connection. If the reflector's certificate was replaced on purpose, "+
		"remove its line from %s and log in again", e.Addr, e.Known, e.Got, e.Store)
}

// Unwrap is ErrFingerprintChanged or ErrUnknownCertificate.
func (e *FingerprintError) Unwrap() error {
	if e.Known == "" {
		return ErrUnknownCertificate
	}
	return ErrFingerprintChanged
}
