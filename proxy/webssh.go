package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/reflector-dev/reflector/store"
)

// ViaWebSSH names the streams of the browser's SSH terminal
// (internal/webssh): the reflector itself is the SSH client, over a stream
// opened with OpenStream.
const ViaWebSSH = "web-ssh"

// OpenStream opens a stream to port of device for cred at client, for a
// part of the reflector that speaks to the device itself (the browser's
// SSH terminal, via ViaWebSSH), with the checks and the bookkeeping of
// every other stream: the device must exist (ErrUnknownDevice) and cred
// reach it (ErrNoAccess), the port be in the device's list
// (ErrPortNotListed); the stream counts toward MaxUserStreams
// (ErrTooManyStreams), is listed by Streams with its bytes, and is closed
// by Revalidate when cred no longer reaches the device, by CutStream and
// by Close. ctx bounds the open alone (OpenTimeout too).
//
// The caller owns the returned conn and must Close it; the stream is
// audited then (a stream event, reason via, with its bytes and duration).
// Once the grant is ended, Read and Write fail as on a closed conn.
func (p *Proxy) OpenStream(ctx context.Context, cred store.Credential, client netip.Addr, device string, port uint16, via string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpenTimeout)
	defer cancel()
	d, err := p.allowedDevice(ctx, cred, device)
	if err == nil {
		err = checkPort(d, port)
	}
	if err != nil {
		return nil, err
	}
	a := access{cred: cred, client: client, device: d, port: port}
	log := p.cfg.Logger.With("req", p.reqID.Add(1), "user", cred.User.Name, "device", d.ID, "port", port, "client", client, "via", via)
	g, gctx, err := p.hold(a, via)
	if err != nil {
		log.Info(via+" refused", "err", err)
		return nil, err
	}
	stream, err := p.cfg.Dial(ctx, d.ID, port, client)
	if err != nil {
		p.grants.remove(g)
		g.cancel()
		log.Info(via+" refused", "err", err)
		return nil, err
	}
	c := &ownedStream{Conn: stream, n: g.n, closed: make(chan struct{})}
	go p.splice(gctx, g, a, log, via, func(ctx context.Context) error {
		select {
		case <-ctx.Done(): // revoked, cut, or the proxy closing
		case <-c.closed:
		}
		// The owner's Close has closed it already, or this ends it under
		// the owner: either way its end is no error of its own.
		stream.Close()
		return nil
	})
	return c, nil
}

// ownedStream is a device stream handed to its caller (OpenStream): it
// counts the bytes each way into the grant's traffic, and its Close ends
// the splice that holds the grant, which audits it.
type ownedStream struct {
	net.Conn
	n         *traffic
	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

func (c *ownedStream) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.down.Add(int64(n))
	return n, err
}

func (c *ownedStream) Write(b []byte) (int, error) {
	// Counted before the write, as tunnel.JoinCounting does: the device
	// may answer before Write returns.
	c.n.up.Add(int64(len(b)))
	n, err := c.Conn.Write(b)
	if n < len(b) {
		c.n.up.Add(int64(n - len(b)))
	}
	return n, err
}

// Close closes the stream; the grant's splice then audits it.
func (c *ownedStream) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
