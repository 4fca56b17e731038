package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// A WebTunnel device tunnel (PROTOCOL.md §6): one WebSocket to a
// WebTunnelAgent carrying channels in frames (webtunnel_frame.go). The
// reflector allocates channel numbers and opens channels; the agent confirms
// or faults them. The protocol has no per-channel flow control, so each
// channel's inbound bytes wait in a bounded queue here:
//
//   - a channel queues what its user has not read yet while the queue holds
//     less than ChannelQueue (256 KiB), so at most that plus one frame;
//   - while a channel's queue is full, the tunnel's one reader stops reading
//     the WebSocket, which back-pressures the whole tunnel (every channel of
//     the device) through TCP to the agent, until the user reads; each wait
//     lasts at most StallTimeout (5 s);
//   - when a wait runs out the channel is closed with ERROR (code 5, socket
//     error) toward the agent, which closes its socket to the device port;
//     the queued bytes are dropped, the user's next Read and Write fail,
//     and the reader goes on with the other channels.
//
// A tunnel's memory is therefore bounded by its open channels × (queue +
// one message), whatever its users do.

const (
	// DefaultWTChannelQueue bounds the bytes one channel may queue.
	DefaultWTChannelQueue = 256 << 10
	// DefaultWTStallTimeout is how long a full channel may hold up the
	// tunnel's reader before it is closed.
	DefaultWTStallTimeout = 5 * time.Second

	// wtWriteTimeout bounds one message write to the agent: an agent that
	// takes no bytes for this long is dead, and so is its tunnel.
	wtWriteTimeout = 30 * time.Second
	// wtMaxChannels is the number of channel numbers (0 is never used).
	wtMaxChannels = 65535
	// wtKeepBuffer is the largest buffer kept after it has been emptied; a
	// bigger one goes back to the garbage collector, so an idle channel or
	// tunnel holds little.
	wtKeepBuffer = 32 << 10
)

// errWTStalled: the user did not read a channel whose queue was full.
var errWTStalled = errors.New("webtunnel channel closed: its reader stopped reading")

// wtFramePool holds one outgoing DATA frame: header and the largest payload.
var wtFramePool = sync.Pool{New: func() any {
	b := make([]byte, 0, WTHeaderLen+MaxWTPayload)
	return &b
}}

// wtConfig is what a tunnel needs from its server; zero fields take defaults.
type wtConfig struct {
	Idle         time.Duration // silence after which the agent is dead
	ChannelQueue int
	StallTimeout time.Duration
	Logger       *slog.Logger
	// Declared, if set, is told the merged allow-list and properties after
	// each property update frame; the server points it at the hub
	// (Registration.Update). It runs on the tunnel's reader.
	Declared func(ports []uint16, properties map[string]string)
}

// wtTunnel is one WebTunnelAgent's tunnel. Its reader (run) is the only
// goroutine reading the WebSocket; writers share it under writeMu, one frame
// per message, so frames of different channels interleave but never split.
type wtTunnel struct {
	ws  *websocket.Conn
	cfg wtConfig
	log *slog.Logger

	// Writers.
	writeMu sync.Mutex

	mu    sync.Mutex
	chans map[uint16]*wtChan // open and pending channels; nil once ended
	next  uint16             // last channel number handed out

	// Reader only: the declared allow-list and properties, merged with
	// each property update frame.
	ports []uint16
	props map[string]string

	lastAlive atomic.Int64 // unix ns of the last read-deadline extension
	badFrames atomic.Int64

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when run has returned
}

// newWTTunnel wraps an upgraded WebSocket; info's ports and properties are
// the tunnel's initial ones. The caller runs t.run.
func newWTTunnel(ws *websocket.Conn, info DeviceInfo, cfg wtConfig) *wtTunnel {
	if cfg.Idle <= 0 {
		cfg.Idle = 90 * time.Second
	}
	if cfg.ChannelQueue <= 0 {
		cfg.ChannelQueue = DefaultWTChannelQueue
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultWTStallTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &wtTunnel{
		ws:      ws,
		cfg:     cfg,
		log:     log,
		chans:   make(map[uint16]*wtChan),
		ports:   slices.Clone(info.Ports),
		props:   maps.Clone(info.Properties),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if t.props == nil {
		t.props = make(map[string]string)
	}
	ws.SetReadLimit(MaxWTMessage)
	// The agent pings after its keep-alive of silence and expects a pong;
	// it never answers ours, so its pings and frames are what keeps the
	// tunnel alive (alive). WriteControl may run beside WriteMessage.
	ws.SetPingHandler(func(data string) error {
		t.alive()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wtWriteTimeout))
		if err == websocket.ErrCloseSent {
			return nil
		}
		return err
	})
	ws.SetPongHandler(func(string) error { t.alive(); return nil })
	t.alive()
	return t
}

func (t *wtTunnel) Done() <-chan struct{} { return t.done }

// Close closes the WebSocket; run then ends every channel and closes Done.
func (t *wtTunnel) Close() error {
	t.closeOnce.Do(func() {
		close(t.closing)
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = t.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		t.ws.Close()
	})
	return nil
}

// alive pushes the read deadline to Idle from now. It is called on every
// message and pong from the agent and every successful write to it (a dead
// agent stops taking writes within wtWriteTimeout), at most once a second.
func (t *wtTunnel) alive() {
	now := time.Now()
	if now.UnixNano()-t.lastAlive.Load() < int64(time.Second) {
		return
	}
	t.lastAlive.Store(now.UnixNano())
	_ = t.ws.SetReadDeadline(now.Add(t.cfg.Idle))
}

// writeMsg sends one frame as one binary message; the caller holds writeMu.
// A failed write ends the tunnel: the frame may be half sent.
func (t *wtTunnel) writeMsg(b []byte) error {
	_ = t.ws.SetWriteDeadline(time.Now().Add(wtWriteTimeout))
	if err := t.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Close()
		return fmt.Errorf("webtunnel write: %w: %w", ErrDeviceOffline, err)
	}
	t.alive()
	return nil
}

// send writes a frame without payload.
func (t *wtTunnel) send(op WTOp, ch, arg uint16) error {
	var b [WTHeaderLen + wtArgLen]byte
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	return t.writeMsg(AppendWTHeader(b[:0], op, ch, arg))
}

// Open allocates a channel, sends OPEN and waits for CONFIRM or FAULT.
func (t *wtTunnel) Open(ctx context.Context, port uint16, client string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultOpenTimeout)
		defer cancel()
	}
	c, err := t.allocate(port)
	if err != nil {
		return nil, err
	}
	if err := t.send(WTOpOpen, c.id, port); err != nil {
		t.free(c)
		return nil, fmt.Errorf("open channel: %w", err)
	}
	select {
	case err := <-c.opened:
		if err != nil {
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
	case <-t.done:
	}
	// Given up: a CONFIRM arriving later is answered with ERROR (dispatch).
	c.mu.Lock()
	pending := c.state == wtPending
	if pending {
		c.state = wtAbandoned
	}
	c.mu.Unlock()
	if !pending { // the answer raced the give-up
		if err := <-c.opened; err == nil {
			c.Close()
		}
	}
	switch {
	case t.ended():
		return nil, fmt.Errorf("open channel: %w", ErrDeviceOffline)
	case errors.Is(ctx.Err(), context.Canceled):
		return nil, fmt.Errorf("open channel: %w", ctx.Err())
	}
	return nil, fmt.Errorf("open channel: %w", ErrTimeout)
}

func (t *wtTunnel) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// allocate reserves the next free channel number: numbers go round 1..65535
// and one still open or pending is never reused.
func (t *wtTunnel) allocate(port uint16) (*wtChan, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chans == nil {
		return nil, fmt.Errorf("open channel: %w", ErrDeviceOffline)
	}
	if len(t.chans) >= wtMaxChannels {
		return nil, fmt.Errorf("open channel: all %d webtunnel channels in use: %w", wtMaxChannels, ErrDeviceFailure)
	}
	for {
		t.next++
		if t.next == 0 {
			t.next = 1
		}
		if _, used := t.chans[t.next]; !used {
			break
		}
	}
	c := &wtChan{
		t:        t,
		id:       t.next,
		port:     port,
		opened:   make(chan error, 1),
		readable: make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
	}
	t.chans[c.id] = c
	return c, nil
}

// free releases c's number, if c still holds it.
func (t *wtTunnel) free(c *wtChan) {
	t.mu.Lock()
	if t.chans[c.id] == c {
		delete(t.chans, c.id)
	}
	t.mu.Unlock()
}

func (t *wtTunnel) lookup(ch uint16) *wtChan {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.chans[ch]
}

// run reads frames until the WebSocket fails or closes, then ends every
// channel. It is the tunnel's only reader.
func (t *wtTunnel) run() error {
	defer t.end()
	var msg []byte
	for {
		kind, r, err := t.ws.NextReader()
		if err != nil {
			return normalizeClose(err)
		}
		t.alive()
		if kind != websocket.BinaryMessage {
			continue
		}
		if msg, err = readMessage(r, msg[:0]); err != nil {
			return normalizeClose(err)
		}
		f, err := ParseWTFrame(msg)
		if err != nil {
			if t.badFrames.Add(1) == 1 { // once per tunnel: a broken agent repeats itself
				t.log.Warn("webtunnel frame dropped", "err", err)
			}
		} else {
			t.dispatch(f)
		}
		if cap(msg) > wtKeepBuffer {
			msg = nil
		}
	}
}

// readMessage appends the rest of r to buf; the read limit bounds it.
func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	if buf == nil {
		buf = make([]byte, 0, 2*(WTHeaderLen+MaxWTPayload))
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// end runs once run has returned: every channel fails, Done closes.
func (t *wtTunnel) end() {
	t.Close()
	t.mu.Lock()
	chans := t.chans
	t.chans = nil
	t.mu.Unlock()
	close(t.done)
	for _, c := range chans {
		c.fail(fmt.Errorf("webtunnel: %w", ErrDeviceOffline), nil)
	}
}

func (t *wtTunnel) dispatch(f WTFrame) {
	switch f.Op {
	case WTOpData:
		if c := t.lookup(f.Channel); c != nil {
			t.deliver(c, f.Payload)
		}
	case WTOpConfirm:
		c := t.lookup(f.Channel)
		if c == nil {
			return
		}
		c.mu.Lock()
		state := c.state
		if state == wtPending {
			c.state = wtOpen
		}
		c.mu.Unlock()
		switch state {
		case wtPending:
			c.opened <- nil
		case wtAbandoned: // Open gave up: drop the device connection at once
			t.free(c)
			t.send(WTOpError, c.id, uint16(WTErrSocket))
		}
	case WTOpFault:
		if c := t.lookup(f.Channel); c != nil {
			c.fail(f.Code.Err(), f.Code.Err())
		}
	case WTOpError:
		if c := t.lookup(f.Channel); c != nil {
			c.fail(fmt.Errorf("webtunnel channel reset by the device (%s): %w", f.Code, ErrDeviceFailure), f.Code.Err())
		}
	case WTOpClose:
		c := t.lookup(f.Channel)
		if c == nil {
			return
		}
		c.mu.Lock()
		if c.state != wtOpen {
			c.mu.Unlock()
			return
		}
		c.gotClose = true
		both := c.sentClose
		c.mu.Unlock()
		signal(c.readable)
		if both {
			t.free(c)
		}
	case WTOpProps:
		t.updateProperties(f.Props)
	case WTOpOpen: // only the reflector opens channels
		t.send(WTOpFault, f.Channel, uint16(WTErrProtocol))
	}
}

// updateProperties merges a property update frame into what the device
// declared: known properties are set (as in the upgrade's headers), an
// invalid targetPorts is ignored, others are dropped.
func (t *wtTunnel) updateProperties(props []WTProperty) {
	for _, p := range props {
		name, v, ok := wtProperty(p.Key, p.Value)
		switch {
		case !ok:
		case name == "targetPorts":
			if ports, err := parseWTPorts(v); err == nil && len(ports) > 0 {
				t.ports = ports
			} else {
				t.log.Warn("webtunnel property update: bad targetPorts ignored", "value", v)
			}
		default:
			t.props[name] = v
		}
	}
	t.log.Debug("webtunnel device properties updated", "ports", t.ports, "properties", len(props))
	if t.cfg.Declared != nil {
		t.cfg.Declared(t.ports, t.props)
	}
}

// deliver queues p for c's reader. A full queue holds up the tunnel until
// the reader makes room, for at most StallTimeout each time; then the channel
// is closed with ERROR and the reader goes on with the other channels.
func (t *wtTunnel) deliver(c *wtChan, p []byte) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.state != wtOpen || c.gotClose || c.err != nil || c.closed {
			c.mu.Unlock()
			return // nobody will read it
		}
		if len(c.buf)-c.off < t.cfg.ChannelQueue {
			if c.off > 0 && len(c.buf)+len(p) > cap(c.buf) {
				n := copy(c.buf, c.buf[c.off:])
				c.buf, c.off = c.buf[:n], 0
			}
			c.buf = append(c.buf, p...)
			c.mu.Unlock()
			signal(c.readable)
			return
		}
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(t.cfg.StallTimeout)
		} else {
			timer.Reset(t.cfg.StallTimeout)
		}
		select {
		case <-c.space: // read from, closed or failed: re-check
		case <-timer.C:
			t.log.Warn("webtunnel channel closed: its user stopped reading",
				"channel", c.id, "port", c.port, "queued", t.cfg.ChannelQueue)
			c.abort(errWTStalled)
			return
		case <-t.closing:
			return
		}
	}
}

// signal wakes the waiter on ch, if any, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

type wtState uint8

const (
	wtPending   wtState = iota // OPEN sent, no answer yet
	wtOpen                     // confirmed
	wtAbandoned                // Open gave up before the answer
	wtEnded                    // faulted, reset or the tunnel ended
)

// wtChan is one channel, a net.Conn to the user. Reads take what the
// tunnel's reader queued; writes send DATA frames themselves.
type wtChan struct {
	t      *wtTunnel
	id     uint16
	port   uint16
	opened chan error // Open's answer: nil for CONFIRM; capacity 1

	readable chan struct{} // data, EOF or an error arrived, or a deadline changed
	space    chan struct{} // the user read from a full queue

	writeMu sync.Mutex // one Write at a time, so its frames stay in order

	mu        sync.Mutex
	state     wtState
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
func (c *wtChan) fail(err, answer error) {
	c.t.free(c)
	c.mu.Lock()
	state := c.state
	c.state = wtEnded
	if c.err == nil {
		c.err = err
	}
	c.buf, c.off = nil, 0
	c.mu.Unlock()
	if state == wtPending {
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
func (c *wtChan) abort(err error) {
	c.mu.Lock()
	live := c.state == wtOpen
	c.mu.Unlock()
	if !live {
		return
	}
	c.fail(err, nil)
	c.t.send(WTOpError, c.id, uint16(WTErrSocket))
}

func (c *wtChan) Read(p []byte) (int, error) {
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
				if cap(c.buf) > wtKeepBuffer {
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

// Write sends p in DATA frames of at most MaxWTPayload bytes, each built in
// a pooled buffer and written as one message.
func (c *wtChan) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	bp := wtFramePool.Get().(*[]byte)
	defer wtFramePool.Put(bp)
	n := 0
	for len(p) > 0 {
		k := min(len(p), MaxWTPayload)
		*bp = AppendWTData((*bp)[:0], c.id, p[:k])
		if err := c.writeFrame(*bp); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// writeFrame checks, under the tunnel's write lock, that c may still send,
// so no DATA follows our CLOSE or ERROR.
func (c *wtChan) writeFrame(b []byte) error {
	t := c.t
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
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
func (c *wtChan) CloseWrite() error {
	t := c.t
	t.writeMu.Lock()
	c.mu.Lock()
	if c.sentClose || c.state != wtOpen {
		c.mu.Unlock()
		t.writeMu.Unlock()
		return nil
	}
	c.sentClose = true
	both := c.gotClose
	c.mu.Unlock()
	var b [WTHeaderLen]byte
	err := t.writeMsg(AppendWTHeader(b[:0], WTOpClose, c.id, 0))
	t.writeMu.Unlock()
	if both {
		t.free(c)
	}
	return err
}

// Close ends the channel. When both sides have closed (the normal end after
// Join) it sends our CLOSE if not sent; otherwise the user is going away
// with the device still sending, and it sends ERROR, which closes the
// device's connection at once. Either way the number is free again.
func (c *wtChan) Close() error {
	t := c.t
	t.writeMu.Lock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		t.writeMu.Unlock()
		return nil
	}
	c.closed = true
	c.buf, c.off = nil, 0
	open := c.state == wtOpen && c.err == nil
	op := WTOpError
	if c.gotClose {
		op = WTOpClose
	}
	send := open && !(c.gotClose && c.sentClose)
	if open {
		c.state = wtEnded
		c.sentClose = true
	}
	c.mu.Unlock()
	var err error
	if send {
		var b [WTHeaderLen + wtArgLen]byte
		err = t.writeMsg(AppendWTHeader(b[:0], op, c.id, uint16(WTErrSocket)))
	}
	t.writeMu.Unlock()
	signal(c.readable)
	signal(c.space)
	if open {
		t.free(c)
	}
	return err
}

func (c *wtChan) LocalAddr() net.Addr  { return c.t.ws.LocalAddr() }
func (c *wtChan) RemoteAddr() net.Addr { return c.t.ws.RemoteAddr() }

func (c *wtChan) SetDeadline(d time.Time) error {
	c.SetReadDeadline(d)
	return c.SetWriteDeadline(d)
}

// SetReadDeadline bounds Read, a blocked one included.
func (c *wtChan) SetReadDeadline(d time.Time) error {
	c.mu.Lock()
	c.rdl = d
	c.mu.Unlock()
	signal(c.readable)
	return nil
}

// SetWriteDeadline bounds when a Write may start another frame; one frame's
// write is bounded by the tunnel's own write timeout, as frames of all
// channels share the WebSocket.
func (c *wtChan) SetWriteDeadline(d time.Time) error {
	c.mu.Lock()
	c.wdl = d
	c.mu.Unlock()
	return nil
}
