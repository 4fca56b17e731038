//go:build unix

package swarm

import (
	"fmt"
	"syscall"
)

// checkFileLimit makes sure this process may hold a descriptor per agent
// and some to spare. Go raises the soft limit to the hard one at start;
// the hard limit is the operator's (ulimit -Hn).
func checkFileLimit(devices int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("swarm: read the file limit: %w", err)
	}
	need := uint64(devices) + 256
	if lim.Cur >= need {
		return nil
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
		return fmt.Errorf("swarm: %d agents need %d descriptors, the limit is %d (ulimit -Hn): raise it, or run fewer agents per swarm process", devices, need, lim.Cur)
	}
	return nil
}
