package webtunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/tunnel"
)

// A WebTunnel device tunnel (PROTOCOL.md §6): one WebSocket to a
// WebTunnelAgent carrying channels in frames (frame.go). The
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
	// DefaultChannelQueue bounds the bytes one channel may queue.
	DefaultChannelQueue = 256 << 10
	// DefaultStallTimeout is how long a full channel may hold up the
	// tunnel's reader before it is closed.
	DefaultStallTimeout = 5 * time.Second

	// writeTimeout bounds one message write to the agent: an agent that
	// takes no bytes for this long is dead, and so is its tunnel.
	writeTimeout = 30 * time.Second
	// maxChannels is the number of channel numbers (0 is never used).
	maxChannels = 65535
	// keepBuffer is the largest buffer kept after it has been emptied; a
	// bigger one goes back to the garbage collector, so an idle channel or
	// tunnel holds little.
	keepBuffer = 32 << 10
)

// errStalled: the user did not read a channel whose queue was full.
var errStalled = errors.New("webtunnel channel closed: its reader stopped reading")

// framePool holds one outgoing DATA frame behind its message header: room
// for the header (msgHeadroom), the frame's header and the largest payload.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, msgHeadroom+HeaderLen+MaxPayload)
	return &b
}}

// msgPool holds the buffer the reader reads a message into, between
// messages, so that an idle tunnel holds none.
var msgPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*(HeaderLen+MaxPayload))
	return &b
}}

// tunnelConfig is what a tunnel needs from its server; zero fields take defaults.
type tunnelConfig struct {
	Idle         time.Duration // silence after which the agent is dead
	ChannelQueue int
	StallTimeout time.Duration
	Logger       *slog.Logger
	// Declared, if set, is told the merged allow-list and properties after
	// each property update frame; the server points it at the hub
	// (Registration.Update). It runs on the tunnel's reader.
	Declared func(ports []uint16, properties map[string]string)
}

// agentTunnel is one WebTunnelAgent's tunnel. Its reader (run) is the only
// goroutine reading the WebSocket; writers share it under the write lock,
// one frame per message (message.go), so frames of different channels
// interleave but never split.
//
// An idle tunnel is this struct, gorilla's Conn with its 256-byte read
// buffer, crypto/tls's connection and the one goroutine of run: buffers for
// data are taken from pools while a message is read or written (issue 16).
type agentTunnel struct {
	ws   *websocket.Conn
	conn net.Conn // ws's connection, which messages are written to
	cfg  tunnelConfig
	log  *slog.Logger

	// Writers. wlock is the write lock: holding it is having put the one
	// token it holds. A channel rather than a sync.Mutex so that Close can
	// give up waiting for a stuck writer, as gorilla's own lock does.
	wlock  chan struct{}
	wstate writeState // under wlock

	mu    sync.Mutex
	chans map[uint16]*channel // open and pending channels; nil once ended
	next  uint16              // last channel number handed out

	// Reader only: the declared allow-list and properties, merged with
	// each property update frame. Until the first, they are the hub's
	// (tunnel.DeviceInfo), never changed in place: an idle tunnel keeps no
	// copy.
	ports    []uint16
	props    map[string]string
	ownProps bool // props is a copy of our own

	lastAlive atomic.Int64 // unix ns of the last read-deadline extension
	badFrames atomic.Int64

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when run has returned
}

// newAgentTunnel wraps an upgraded WebSocket; info's ports and properties are
// the tunnel's initial ones. The caller runs t.run.
func newAgentTunnel(ws *websocket.Conn, info tunnel.DeviceInfo, cfg tunnelConfig) *agentTunnel {
	if cfg.Idle <= 0 {
		cfg.Idle = 90 * time.Second
	}
	if cfg.ChannelQueue <= 0 {
		cfg.ChannelQueue = DefaultChannelQueue
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &agentTunnel{
		ws:      ws,
		conn:    ws.UnderlyingConn(),
		wlock:   make(chan struct{}, 1),
		cfg:     cfg,
		log:     log,
		chans:   make(map[uint16]*channel),
		ports:   info.Ports,
		props:   info.Properties,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	ws.SetReadLimit(MaxMessage)
	// The agent pings after its keep-alive of silence and expects a pong;
	// it never answers ours, so its pings and frames are what keeps the
	// tunnel alive (alive). WriteControl may run beside WriteMessage.
	ws.SetPingHandler(func(data string) error {
		t.alive()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		if err == websocket.ErrCloseSent {
			return nil
		}
		return err
	})
	ws.SetPongHandler(func(string) error { t.alive(); return nil })
	// gorilla's own answer to the agent's close frame would not wait for a
	// message being written (ours do not take gorilla's lock).
	ws.SetCloseHandler(func(code int, _ string) error { t.sendClose(code); return nil })
	t.alive()
	return t
}

func (t *agentTunnel) Done() <-chan struct{} { return t.done }

// Close closes the WebSocket; run then ends every channel and closes Done.
func (t *agentTunnel) Close() error {
	t.closeOnce.Do(func() {
		close(t.closing)
		t.sendClose(websocket.CloseNormalClosure)
		t.ws.Close()
	})
	return nil
}

// writeState is what the write side of the WebSocket may still carry.
type writeState uint8

const (
	writeOpen      writeState = iota
	writeCloseSent            // our close frame is out: no message follows it
	writeBroken               // a write failed, maybe half way through a message
)

// lockWrite takes the write lock.
func (t *agentTunnel) lockWrite() { t.wlock <- struct{}{} }

// unlockWrite releases the write lock; if a write under it failed, it then
// closes the tunnel.
func (t *agentTunnel) unlockWrite() {
	broken := t.wstate == writeBroken
	<-t.wlock
	if broken {
		t.Close()
	}
}

// sendClose sends a close frame with code, once, after any message being
// written; it gives up when that takes more than a second (closing the
// connection then ends the stuck write).
func (t *agentTunnel) sendClose(code int) {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	select {
	case t.wlock <- struct{}{}:
	case <-timer.C:
		return
	}
	defer func() { <-t.wlock }()
	if t.wstate != writeOpen {
		return
	}
	t.wstate = writeCloseSent
	msg := websocket.FormatCloseMessage(code, "")
	_ = t.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// alive pushes the read deadline to Idle from now. It is called on every
// message and pong from the agent and every successful write to it (a dead
// agent stops taking writes within writeTimeout), at most once a second.
func (t *agentTunnel) alive() {
	now := time.Now()
	if now.UnixNano()-t.lastAlive.Load() < int64(time.Second) {
		return
	}
	t.lastAlive.Store(now.UnixNano())
	_ = t.ws.SetReadDeadline(now.Add(t.cfg.Idle))
}

// writeMsg sends the frame buf[msgHeadroom:] as one binary message; the
// caller holds the write lock. A failed write breaks the write side, and
// unlockWrite then ends the tunnel: the message may be half sent.
func (t *agentTunnel) writeMsg(buf []byte) error {
	if t.wstate != writeOpen {
		return fmt.Errorf("webtunnel write: %w: %w", tunnel.ErrDeviceOffline, websocket.ErrCloseSent)
	}
	_ = t.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := t.conn.Write(wsMessage(buf)); err != nil {
		t.wstate = writeBroken
		return fmt.Errorf("webtunnel write: %w: %w", tunnel.ErrDeviceOffline, err)
	}
	t.alive()
	return nil
}

// send writes a frame without payload.
func (t *agentTunnel) send(op Op, ch, arg uint16) error {
	var b [msgHeadroom + HeaderLen + argLen]byte
	t.lockWrite()
	defer t.unlockWrite()
	return t.writeMsg(AppendHeader(b[:msgHeadroom], op, ch, arg))
}

// Open allocates a channel, sends OPEN and waits for CONFIRM or FAULT.
func (t *agentTunnel) Open(ctx context.Context, port uint16, client string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tunnel.DefaultOpenTimeout)
		defer cancel()
	}
	c, err := t.allocate(port)
	if err != nil {
		return nil, err
	}
	if err := t.send(OpOpen, c.id, port); err != nil {
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
	pending := c.state == statePending
	if pending {
		c.state = stateAbandoned
	}
	c.mu.Unlock()
	if !pending { // the answer raced the give-up
		if err := <-c.opened; err == nil {
			c.Close()
		}
	}
	switch {
	case t.ended():
		return nil, fmt.Errorf("open channel: %w", tunnel.ErrDeviceOffline)
	case errors.Is(ctx.Err(), context.Canceled):
		return nil, fmt.Errorf("open channel: %w", ctx.Err())
	}
	return nil, fmt.Errorf("open channel: %w", tunnel.ErrTimeout)
}

func (t *agentTunnel) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// allocate reserves the next free channel number: numbers go round 1..65535
// and one still open or pending is never reused.
func (t *agentTunnel) allocate(port uint16) (*channel, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chans == nil {
		return nil, fmt.Errorf("open channel: %w", tunnel.ErrDeviceOffline)
	}
	if len(t.chans) >= maxChannels {
		return nil, fmt.Errorf("open channel: all %d webtunnel channels in use: %w", maxChannels, tunnel.ErrDeviceFailure)
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
	c := &channel{
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
func (t *agentTunnel) free(c *channel) {
	t.mu.Lock()
	if t.chans[c.id] == c {
		delete(t.chans, c.id)
	}
	t.mu.Unlock()
}

func (t *agentTunnel) lookup(ch uint16) *channel {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.chans[ch]
}

// run reads frames until the WebSocket fails or closes, then ends every
// channel. It is the tunnel's only reader.
func (t *agentTunnel) run() error {
	defer t.end()
	for {
		kind, r, err := t.ws.NextReader()
		if err != nil {
			return tunnel.CloseAsEOF(err)
		}
		t.alive()
		if kind != websocket.BinaryMessage {
			continue
		}
		if err := t.readFrame(r); err != nil {
			return tunnel.CloseAsEOF(err)
		}
	}
}

// readFrame reads one message into a pooled buffer and dispatches its
// frame; dispatch copies what it keeps, so the buffer goes back to the pool.
func (t *agentTunnel) readFrame(r io.Reader) error {
	bp := msgPool.Get().(*[]byte)
	msg, err := readMessage(r, (*bp)[:0])
	if err == nil {
		if f, perr := ParseFrame(msg); perr != nil {
			if t.badFrames.Add(1) == 1 { // once per tunnel: a broken agent repeats itself
				t.log.Warn("webtunnel frame dropped", "err", perr)
			}
		} else {
			t.dispatch(f)
		}
	}
	if cap(msg) <= keepBuffer {
		*bp = msg[:0]
		msgPool.Put(bp)
	}
	return err
}

// readMessage appends the rest of r to buf; the read limit bounds it.
func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 512))
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
func (t *agentTunnel) end() {
	t.Close()
	t.mu.Lock()
	chans := t.chans
	t.chans = nil
	t.mu.Unlock()
	close(t.done)
	for _, c := range chans {
		c.fail(fmt.Errorf("webtunnel: %w", tunnel.ErrDeviceOffline), nil)
	}
}

func (t *agentTunnel) dispatch(f Frame) {
	switch f.Op {
	case OpData:
		if c := t.lookup(f.Channel); c != nil {
			t.deliver(c, f.Payload)
		}
	case OpConfirm:
		c := t.lookup(f.Channel)
		if c == nil {
			return
		}
		c.mu.Lock()
		state := c.state
		if state == statePending {
			c.state = stateOpen
		}
		c.mu.Unlock()
		switch state {
		case statePending:
			c.opened <- nil
		case stateAbandoned: // Open gave up: drop the device connection at once
			t.free(c)
			t.send(OpError, c.id, uint16(CodeSocket))
		}
	case OpFault:
		if c := t.lookup(f.Channel); c != nil {
			c.fail(f.Code.Err(), f.Code.Err())
		}
	case OpError:
		if c := t.lookup(f.Channel); c != nil {
			c.fail(fmt.Errorf("webtunnel channel reset by the device (%s): %w", f.Code, tunnel.ErrDeviceFailure), f.Code.Err())
		}
	case OpClose:
		c := t.lookup(f.Channel)
		if c == nil {
			return
		}
		c.mu.Lock()
		if c.state != stateOpen {
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
	case OpProps:
		t.updateProperties(f.Props)
	case OpOpen: // only the reflector opens channels
		t.send(OpFault, f.Channel, uint16(CodeProtocol))
	}
}

// updateProperties merges a property update frame into what the device
// declared: known properties are set (as in the upgrade's headers), an
// invalid targetPorts is ignored, others are dropped.
func (t *agentTunnel) updateProperties(props []Property) {
	if !t.ownProps { // the first update: the map was the hub's
		t.props = maps.Clone(t.props)
		if t.props == nil {
			t.props = make(map[string]string)
		}
		t.ownProps = true
	}
	for _, p := range props {
		name, v, ok := property(p.Key, p.Value)
		switch {
		case !ok:
		case name == "targetPorts":
			if ports, err := tunnel.ParsePorts(v); err == nil && len(ports) > 0 {
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
func (t *agentTunnel) deliver(c *channel, p []byte) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.state != stateOpen || c.gotClose || c.err != nil || c.closed {
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
			c.abort(errStalled)
			return
		case <-t.closing:
			return
		}
	}
}
