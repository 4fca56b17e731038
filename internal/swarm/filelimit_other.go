//go:build !unix

package swarm

// checkFileLimit: no RLIMIT_NOFILE on this system; the swarm reads /proc
// and runs on Linux, but the package builds everywhere.
func checkFileLimit(devices int) error { return nil }
