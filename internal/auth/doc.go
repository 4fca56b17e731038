// Package auth decides who a request from the network is, for the
// reflector's server side: it checks proxy logins, bearer tokens, agent
// secrets, enrolment keys, web passwords and TOTP codes against the store
// (Guard), throttles failures per user, device and client address
// (Limiter), writes every outcome to the audit log, and finds the client
// address that all of these go by (ClientResolver).
//
// Passwords are refused unchecked while their user or address is locked
// out, and so are device secrets while their device id is (a secret adopted
// from an existing fleet may be guessable). Tokens, enrolment keys and
// device secrets are checked even from a locked address: they carry at
// least 128 random bits (adopted device secrets aside) and cost one SHA-256,
// so a valid one is never locked out by somebody else's failures (a fleet
// behind one NAT address, a user whose name an attacker is guessing at);
// only their failures are counted and answered 429 during a lockout
// (LockedOutError, a tunnel.Throttled).
//
// The client address is the socket's peer, unless that peer is a trusted
// reverse proxy (--trusted-proxy), in which case it is the nearest untrusted
// hop of X-Forwarded-For. An untrusted client can never choose it: a header
// is believed only from a trusted proxy, only as far as the chain of trusted
// proxies reaches, and anything malformed ends the walk at the socket's
// address.
package auth
