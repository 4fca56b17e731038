// Package auth decides who a request from the network is, for the
// reflector's server side: it checks proxy logins, bearer tokens, agent
// secrets, enrolment keys, web passwords and TOTP codes against the store
// (Guard), throttles failures per user, client address and, for adopted
// device secrets, device id and address (Limiter), writes every outcome to
// the audit log, and finds the client address that all of these go by
// (ClientResolver).
//
// A guess at something a person chose — a password, a TOTP code, a device
// secret adopted from an existing fleet — is checked inside an Attempt,
// which counts against its keys from the moment the check starts, so
// guesses sent in parallel get no more checks than guesses sent one by one;
// while a key is locked out they are refused unchecked. Adopted device
// secrets are locked per device id and address, since ids are public and a
// lockout per id would keep the real device out. Tokens, enrolment keys and
// generated device secrets carry at least 128 random bits and cost one
// SHA-256, so they are checked even during a lockout and a valid one is
// never locked out by somebody else's failures (a fleet behind one NAT
// address, a user whose name an attacker is guessing at, a device whose id
// is); only their failures are counted, against the address, and answered
// 429 during its lockout (LockedOutError, a tunnel.Throttled).
//
// The client address is the socket's peer, unless that peer is a trusted
// reverse proxy (--trusted-proxy), in which case it is the nearest untrusted
// hop of X-Forwarded-For. An untrusted client can never choose it: a header
// is believed only from a trusted proxy, only as far as the chain of trusted
// proxies reaches, and anything malformed ends the walk at the socket's
// address.
package auth
