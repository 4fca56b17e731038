//go:build unix

package tlsbatch

import (
	"net"
	"syscall"
)

// rawConn is c's socket, for reads that must not wait; nil if it has none.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readNow reads what the non-blocking socket fd holds; EAGAIN when nothing.
func readNow(fd uintptr, p []byte) (int, error) {
	return syscall.Read(int(fd), p)
}
