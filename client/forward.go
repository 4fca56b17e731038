package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PortMap is one forwarded port: connections to Local on the laptop reach
// Remote on the device.
type PortMap struct {
	Local, Remote int
}

// ParsePortMap reads "LOCAL:REMOTE", or "PORT" for the same port on both
// sides. LOCAL may be 0 for a port the system picks.
func ParsePortMap(s string) (PortMap, error) {
	l, r, found := strings.Cut(s, ":")
	if !found {
		r = l
	}
	lp, err1 := strconv.Atoi(l)
	rp, err2 := strconv.Atoi(r)
	if err1 != nil || err2 != nil || lp < 0 || lp > 65535 || rp < 1 || rp > 65535 {
		return PortMap{}, fmt.Errorf("port mapping %q: want LOCAL:REMOTE, e.g. 8022:22", s)
	}
	return PortMap{Local: lp, Remote: rp}, nil
}

// Forwarder forwards local ports to a device's ports: each accepted
// connection is one stream through the reflector.
type Forwarder struct {
	Client *Client
	Device string
	// Retry is how long a new connection waits for a device that is
	// offline or a reflector that cannot be reached (a tunnel that
	// dropped and is coming back); zero means 30 seconds.
	Retry time.Duration
	// Logger gets a line per refused connection; nil: slog.Default.
	Logger *slog.Logger
}

// Listen opens the local listeners on bind (an IP address; "" is
// 127.0.0.1). They are returned in the order of maps, each on its port.
func Listen(bind string, maps []PortMap) ([]net.Listener, error) {
	if bind == "" {
		bind = "127.0.0.1"
	}
	var lns []net.Listener
	for _, m := range maps {
		ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(m.Local)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen on local port %d: %w", m.Local, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Serve forwards connections accepted on lns[i] to maps[i].Remote until
// ctx ends; then it closes the listeners and the open connections and
// returns once every goroutine has.
func (f *Forwarder) Serve(ctx context.Context, lns []net.Listener, maps []PortMap) error {
	if len(lns) != len(maps) {
		return errors.New("forward: one listener per port mapping")
	}
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		remote := maps[i].Remote
		wg.Go(func() {
			// Closing the listener is what ends Accept.
			stop := context.AfterFunc(ctx, func() { ln.Close() })
			defer stop()
			for {
				c, err := ln.Accept()
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("accept on %s: %w", ln.Addr(), err)
						cancel()
					}
					return
				}
				wg.Go(func() { f.serveConn(ctx, log, c, remote) })
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// serveConn dials the device for one local connection and splices them.
func (f *Forwarder) serveConn(ctx context.Context, log *slog.Logger, local net.Conn, port int) {
	defer local.Close()
	remote, err := f.dial(ctx, port)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("connection refused", "from", local.RemoteAddr().String(), "err", err)
		}
		return
	}
	Splice(ctx, local, remote)
}

// dial opens a stream to port, retrying for f.Retry while the device is
// offline or the reflector unreachable.
func (f *Forwarder) dial(ctx context.Context, port int) (net.Conn, error) {
	retry := f.Retry
	if retry == 0 {
		retry = 30 * time.Second
	}
	deadline := time.Now().Add(retry)
	wait := 250 * time.Millisecond
	for {
		c, err := f.Client.Dial(ctx, f.Device, port)
		if err == nil || !Temporary(err) || time.Now().Add(wait).After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Temporary reports whether err may pass by itself: a device offline or
// busy, a reflector that cannot be reached. Refusals of the user (bad
// token, no access, a port not allowed), a device that refused the
// connection and a changed certificate are not. A 502 says "device
// offline" or why the device refused in its reason only, so the reason is
// what tells them apart.
func Temporary(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == 502 && strings.Contains(se.Reason, "device offline") || errors.Is(err, ErrBusy)
	}
	return errors.Is(err, ErrUnreachable)
}

// Splice copies between a and b both ways until both directions end, then
// closes both. An EOF from one side half-closes the other (CloseWrite), so
// a client that sends, half-closes, then reads gets the whole reply. When
// ctx ends both are closed at once.
func Splice(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := bufPool.Get().(*[]byte)
		defer bufPool.Put(buf)
		_, err := io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *buf)
		if err != nil {
			// A failed direction ends both: the other would wait on a
			// peer that is gone.
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
			dst.Close()
		}
	}
	go copyHalf(a, b)
	go copyHalf(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

// bufPool holds the copy buffers of Splice: 64 KiB, a TLS record's worth
// four times over, so a bulk transfer is not cut into small writes.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// onlyWriter and onlyReader hide ReadFrom and WriteTo, so io.CopyBuffer
// uses the pooled buffer rather than a fresh one of its own (as
// TCPConn.ReadFrom's fallback would).
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
