package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/reflector-dev/reflector/internal/tlsbatch"
)

// CopyBufferSize is the size of the pooled buffers Join copies through: one
// smux frame, so a full buffer becomes one frame and one WebSocket message.
// (A 64 KiB buffer would be a full frame and a 1-byte one: smux frames hold
// at most 65,535 bytes.)
const CopyBufferSize = MaxFrameSize

var copyPool = sync.Pool{New: func() any {
	b := make([]byte, CopyBufferSize)
	return &b
}}

// closeWriter is a connection that can half-close: *net.TCPConn, *tls.Conn,
// *smux.Stream and the hub's streams all are.
type closeWriter interface {
	CloseWrite() error
}

// Join copies bytes both ways between a and b until both directions have
// ended, then closes both. When one side ends its sending cleanly (EOF), the
// other side's write half is closed, so a client that half-closes still gets
// the whole reply. An error in either direction, or the end of ctx, closes
// both at once. It returns the bytes copied each way and the first error that
// was not a clean end.
func Join(ctx context.Context, a, b net.Conn) (aToB, bToA int64, err error) {
	var ab, ba atomic.Int64
	err = JoinCounting(ctx, a, b, &ab, &ba)
	return ab.Load(), ba.Load(), err
}

// JoinCounting is Join that adds the bytes it copies to aToB and bToA as it
// goes, one atomic add per chunk, so that others can read how much a
// stream has carried while it is open (the proxy's list of streams).
func JoinCounting(ctx context.Context, a, b net.Conn, aToB, bToA *atomic.Int64) error {
	stop := context.AfterFunc(ctx, func() {
		tlsbatch.Close(a)
		tlsbatch.Close(b)
	})
	defer stop()

	// Capacity 1: the copier below never blocks on sending its result, so it
	// cannot leak if we return early.
	back := make(chan error, 1)
	go func() { back <- pipe(a, b, bToA) }()
	errAB := pipe(b, a, aToB)
	errBA := <-back
	a.Close()
	b.Close()
	return errors.Join(errAB, errBA)
}

// pipe copies src to dst through a pooled buffer, adding what it has
// written to n. On a clean EOF it half-closes dst; on an error it closes
// both, which also ends the copy in the other direction.
func pipe(dst, src net.Conn, n *atomic.Int64) error {
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	buf := *bp
	out := tlsbatch.Writer(dst) // a TLS dst gets each chunk in one socket write
	in := tlsbatch.Reader(src)  // a TLS src fills the buffer with what it holds
	for {
		r, rerr := in.Read(buf)
		if r > 0 {
			// Counted before the write: the far end may answer before
			// Write returns, and a reader of n (the streams listing)
			// must not see the answer before what it answers. A short
			// write takes back what did not go.
			n.Add(int64(r))
			w, werr := out.Write(buf[:r])
			if w < r {
				n.Add(int64(w - r))
			}
			if werr != nil {
				tlsbatch.Close(dst)
				tlsbatch.Close(src)
				return werr
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil {
					tlsbatch.Close(dst)
				}
			} else {
				tlsbatch.Close(dst)
			}
			return nil
		}
		if rerr != nil {
			tlsbatch.Close(dst)
			tlsbatch.Close(src)
			if isClosed(rerr) {
				return nil // the other direction closed us; its error counts
			}
			return rerr
		}
	}
}

// isClosed reports an error that only says the connection was closed by us.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
