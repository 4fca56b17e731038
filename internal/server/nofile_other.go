//go:build !unix

package server

// descriptorLimit: no RLIMIT_NOFILE on this system.
func descriptorLimit() (uint64, bool) { return 0, false }
