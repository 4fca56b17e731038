// Package client is the laptop side of Reflector: what the remote command
// uses to reach a device through a reflector. It opens TLS connections to
// the reflector (directly or through a corporate proxy's CONNECT, from
// HTTPS_PROXY), checks the reflector's certificate (a CA file, a pinned
// SHA-256 fingerprint, the system's roots, or a fingerprint trusted on
// first use and kept in a known-reflectors file), asks the reflector's
// proxy for a stream to a device port with CONNECT and an API token as the
// proxy password, forwards local ports over such streams, and speaks the
// REST API for logging in, listing devices and revoking the token. It links
// none of the server: the wire it speaks is HTTP, as any proxy client's.
package client
