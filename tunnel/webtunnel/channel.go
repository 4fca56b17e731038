package webtunnel

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// One channel of a WebTunnel tunnel, as the user's side sees it: a net.Conn
// whose reads take what the tunnel's reader queued and whose writes send
// DATA frames. The tunnel (tunnel.go) allocates, opens and frees channels.

// signal wakes the waiter on ch, if any, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

type channelState uint8

const (
	statePending   channelState = iota // OPEN sent, no answer yet
	stateOpen                          // confirmed
	stateAbandoned                     // Open gave up before the answer
	stateEnded                         // faulted, reset or the tunnel ended
)

// channel is one channel, a net.Conn to the user. Reads take what the
// tunnel's reader queued; writes send DATA frames themselves.
type channel struct {
	t      *agentTunnel
	id     uint16
	port   uint16
	opened chan error // Open's answer: nil for CONFIRM; capacity 1

	readable chan struct{} // data, EOF or an error arrived, or a deadline changed
	space    chan struct{} // the user read from a full queue

	writeMu sync.Mutex // one Write at a time, so its frames stay in order

	mu        sync.Mutex
	state     channelState
	buf       []byte // queued bytes are buf[off:]
	off       int
	gotClose  bool  // the agent sent CLOSE: EOF after the queue
	sentClose bool  // we sent CLOSE (CloseWrite)
	closed    bool  // Close was called
	err       error // why the channel ended abnormally
	rdl, wdl  time.Time
}

// fail ends c abnormally: from a FAULT or ERROR, or with its tunnel. A
// pending Open gets answer (or err if answer is nil).
func (c *channel) fail(err, answer error) {
	c.t.free(c)
	c.mu.Lock()
	state := c.state
	c.state = stateEnded
	if c.err == nil {
		c.err = err
	}
	c.buf, c.off = nil, 0
	c.mu.Unlock()
	if state == statePending {
		if answer == nil {
			answer = err
		}
		c.opened <- answer
	}
	signal(c.readable)
	signal(c.space)
}

// abort ends an open channel from our side: ERROR to the agent, err to the
// user.
func (c *channel) abort(err error) {
	c.mu.Lock()
	live := c.state == stateOpen
	c.mu.Unlock()
	if !live {
		return
	}
	c.fail(err, nil)
	c.t.send(OpError, c.id, uint16(CodeSocket))
}

func (c *channel) Read(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, net.ErrClosed
		case c.off < len(c.buf):
			n := copy(p, c.buf[c.off:])
			c.off += n
			if c.off == len(c.buf) {
				if cap(c.buf) > keepBuffer {
					c.buf = nil
				} else {
					c.buf = c.buf[:0]
				}
				c.off = 0
			}
			c.mu.Unlock()
			signal(c.space)
			return n, nil
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return 0, err
		case c.gotClose:
			c.mu.Unlock()
			return 0, io.EOF
		}
		dl := c.rdl
		c.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-c.readable:
		case <-expired:
		}
	}
}

// Write sends p in DATA frames of at most MaxPayload bytes, each built in
// a pooled buffer and written as one message.
func (c *channel) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	bp := framePool.Get().(*[]byte)
	defer framePool.Put(bp)
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxPayload)
		*bp = AppendData((*bp)[:msgHeadroom], c.id, p[:k])
		if err := c.writeFrame(*bp); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// writeFrame checks, under the tunnel's write lock, that c may still send,
// so no DATA follows our CLOSE or ERROR; b is a frame behind msgHeadroom.
func (c *channel) writeFrame(b []byte) error {
	t := c.t
	t.lockWrite()
	defer t.unlockWrite()
	c.mu.Lock()
	var err error
	switch {
	case c.closed:
		err = net.ErrClosed
	case c.err != nil:
		err = c.err
	case c.sentClose:
		err = fmt.Errorf("webtunnel write after CloseWrite: %w", net.ErrClosed)
	case !c.wdl.IsZero() && !time.Now().Before(c.wdl):
		err = os.ErrDeadlineExceeded
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return t.writeMsg(b)
}

// CloseWrite sends CLOSE: no more bytes from the user. The channel's number
// is freed once the agent has sent its CLOSE too.
func (c *channel) CloseWrite() error {
	t := c.t
	t.lockWrite()
	c.mu.Lock()
	if c.sentClose || c.state != stateOpen {
		c.mu.Unlock()
		t.unlockWrite()
		return nil
	}
	c.sentClose = true
	both := c.gotClose
	c.mu.Unlock()
	var b [msgHeadroom + HeaderLen]byte
	err := t.writeMsg(AppendHeader(b[:msgHeadroom], OpClose, c.id, 0))
	t.unlockWrite()
	if both {
		t.free(c)
	}
	return err
}

// Close ends the channel. When both sides have closed (the normal end after
// Join) it sends our CLOSE if not sent; otherwise the user is going away
// with the device still sending, and it sends ERROR, which closes the
// device's connection at once. Either way the number is free again.
func (c *channel) Close() error {
	t := c.t
	t.lockWrite()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		t.unlockWrite()
		return nil
	}
	c.closed = true
	c.buf, c.off = nil, 0
	open := c.state == stateOpen && c.err == nil
	op := OpError
	if c.gotClose {
		op = OpClose
	}
	send := open && !(c.gotClose && c.sentClose)
	if open {
		c.state = stateEnded
		c.sentClose = true
	}
	c.mu.Unlock()
	var err error
	if send {
		var b [msgHeadroom + HeaderLen + argLen]byte
		err = t.writeMsg(AppendHeader(b[:msgHeadroom], op, c.id, uint16(CodeSocket)))
	}
	t.unlockWrite()
	signal(c.readable)
	signal(c.space)
	if open {
		t.free(c)
	}
	return err
}

func (c *channel) LocalAddr() net.Addr  { return c.t.ws.LocalAddr() }
func (c *channel) RemoteAddr() net.Addr { return c.t.ws.RemoteAddr() }

func (c *channel) SetDeadline(d time.Time) error {
	c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

// SetReadDeadline bounds Read, a blocked one included.
func (c *channel) SetReadDeadline(d time.Time) error {
	c.mu.Lock()
	c.rdl = d
	c.mu.Unlock()
	signal(c.readable)
	return nil
}

// SetWriteDeadline bounds when a Write may start another frame; one frame's
// write is bounded by the tunnel's own write timeout, as frames of all
// channels share the WebSocket.
func (c *channel) SetWriteDeadline(d time.Time) error {
	c.mu.Lock()
	c.wdl = d
	c.mu.Unlock()
	return nil
}
