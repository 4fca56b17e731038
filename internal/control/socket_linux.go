//go:build linux

package control

import (
	"errors"
	"net"
	"syscall"
)

// peerCheckSupported: Linux names a unix socket's peer (SO_PEERCRED).
const peerCheckSupported = true

// listenPrivate binds a unix socket at path under umask 0177, so that the
// file is 0600 from the moment bind(2) creates it: there is no window in
// which a lax umask (0 in some containers and units) leaves it open. The
// umask is process-wide: Listen runs once, at start-up, before the
// server's goroutines create files, and the old umask is restored at once.
func listenPrivate(path string) (*net.UnixListener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

// peerCred returns the user and process of the other end of conn, as the
// kernel recorded them when it connected (SO_PEERCRED).
func peerCred(conn net.Conn) (uid uint32, pid int32, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, credErr
	}
	return cred.Uid, cred.Pid, nil
}
