//go:build !linux

package control

import (
	"errors"
	"net"
)

// peerCheckSupported: only Linux's SO_PEERCRED is used; elsewhere the
// socket's mode 0600 alone keeps other users out.
const peerCheckSupported = false

// listenPrivate binds a unix socket at path; Listen narrows its mode.
func listenPrivate(path string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

func peerCred(net.Conn) (uint32, int32, error) {
	return 0, 0, errors.New("not supported on this system")
}
