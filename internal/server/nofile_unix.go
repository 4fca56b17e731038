//go:build unix

package server

import "syscall"

// descriptorLimit returns the process's limit of open file descriptors
// (RLIMIT_NOFILE, the soft limit, which Go raises to the hard one at start
// on Linux and the BSDs).
func descriptorLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
