package tunnel

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/internal/tlsbatch"
)

// wsConn adapts a *websocket.Conn to net.Conn: each Write is one binary
// message, and Read streams the payload of consecutive messages, so message
// boundaries do not matter to the reader.
//
// gorilla allows one concurrent reader and one concurrent writer. Both ends
// have exactly one of each (smux's recvLoop and sendLoop in the agent;
// smuxsession's Run and the holder of its write lock in the reflector); the
// mutexes make the adapter safe for any other caller too, at no cost when
// uncontended.
type wsConn struct {
	ws *websocket.Conn
	// batch, when ws runs over TLS on a tlsbatch.Conn, sends each message
	// (one smux frame, up to five TLS records) in one socket write; nil
	// otherwise (Hold and Send then do nothing).
	batch *tlsbatch.Conn

	// Owned by the reader.
	readMu sync.Mutex
	reader io.Reader // the current message; nil between messages

	// Owned by the writer.
	writeMu sync.Mutex
	closed  bool // set by Close under writeMu: no buffer is read after it

	closeOnce sync.Once
	done      chan struct{} // closed once closed is set
}

// NewWSConn returns ws as a net.Conn carrying binary messages. Reads use
// NextReader, so no message is ever copied whole; an expired deadline breaks
// the connection for good, as gorilla does.
func NewWSConn(ws *websocket.Conn) net.Conn {
	return &wsConn{ws: ws, batch: tlsbatch.Of(ws.NetConn()), done: make(chan struct{})}
}

func (c *wsConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.reader == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, CloseAsEOF(err)
			}
			if kind != websocket.BinaryMessage {
				continue // text messages carry nothing of ours; skip them
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write writes p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	return c.WriteBuffers([][]byte{p})
}

// WriteBuffers writes v as one binary message. smux calls it with a frame's
// header and payload: each frame is one WebSocket message, and gorilla's
// write buffer (sized for a whole frame) joins the two, so neither smux nor
// this adapter needs a 64 KiB buffer of its own.
func (c *wsConn) WriteBuffers(v [][]byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.batch.Hold()
	n, err := c.writeMessage(v)
	if serr := c.batch.Send(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// writeMessage writes the parts of v as one binary message; the caller
// holds writeMu.
func (c *wsConn) writeMessage(v [][]byte) (int, error) {
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range v {
		m, err := w.Write(b)
		n += m
		if err != nil {
			w.Close()
			return n, err
		}
	}
	return n, w.Close()
}

// Close sends a close message (best effort, bounded by a short deadline),
// closes the underlying connection and waits for a write in flight, which
// fails on the closed socket, to return: after Close (and Done) no buffer
// handed to Write or WriteBuffers is read again.
func (c *wsConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		err = c.ws.Close()
		c.writeMu.Lock()
		c.closed = true
		c.writeMu.Unlock()
		close(c.done)
	})
	return err
}

// Done is closed once Close has returned: no write reads a buffer after it.
func (c *wsConn) Done() <-chan struct{} { return c.done }

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// CloseAsEOF turns a normal WebSocket close into io.EOF, which is not an
// error to anyone reading a stream.
func CloseAsEOF(err error) error {
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
		return io.EOF
	}
	return err
}
