// Package integration holds the end-to-end tests and benchmarks of the
// reflector: real listeners on 127.0.0.1, real TLS, the real agent, and real
// processes (the built reflector and reflector-agent binaries, curl) where a
// user would run processes. It has no non-test code.
package integration
