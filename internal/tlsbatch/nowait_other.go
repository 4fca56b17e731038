//go:build !unix

package tlsbatch

import (
	"net"
	"syscall"
)

// rawConn is nil off Unix: Reader gathers nothing there, and reads wait as
// crypto/tls's own do.
func rawConn(net.Conn) syscall.RawConn { return nil }

// readNow is never called without a rawConn.
func readNow(uintptr, []byte) (int, error) { return 0, errWouldBlock }
