package client

import (
	"context"
	"io"
	"net"
)

// SpliceStdio copies in to conn and conn to out until the device's side
// ends, for ssh's ProxyCommand. The end of in half-closes conn (the device
// still answers); the end of conn's side ends the splice even while in is
// still open, since ssh closes its end only after the connection does.
// When ctx ends conn is closed.
func SpliceStdio(ctx context.Context, conn net.Conn, in io.Reader, out io.Writer) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	go func() {
		buf := bufPool.Get().(*[]byte)
		defer bufPool.Put(buf)
		if _, err := io.CopyBuffer(onlyWriter{conn}, onlyReader{in}, *buf); err != nil {
			conn.Close()
			return
		}
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	io.CopyBuffer(onlyWriter{out}, onlyReader{conn}, *buf)
}
