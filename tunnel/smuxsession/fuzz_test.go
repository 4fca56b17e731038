package smuxsession

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// scriptConn is a connection whose peer sent script and takes everything.
type scriptConn struct {
	r *bytes.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSession feeds the frame reader arbitrary bytes from the peer, with
// one stream open (id 2). It must end without a panic, and the stream must
// read exactly the payloads of the PSH frames for it, in order, up to the
// peer's FIN or the first bad frame.
func FuzzSession(f *testing.F) {
	f.Add(frame(version, cmdNOP, 0, nil))
	f.Add(append(frame(version, cmdPSH, 2, []byte("hello")), frame(version, cmdFIN, 2, nil)...))
	f.Add(append(frame(version, cmdUPD, 2, []byte{1, 0, 0, 0, 0, 0, 1, 0}), frame(version, cmdSYN, 3, nil)...))
	f.Add(frame(1, cmdPSH, 2, []byte("v1")))
	f.Add(frame(version, 9, 2, nil))
	f.Add(frame(version, cmdPSH, 2, []byte("cut"))[:9])
	f.Fuzz(func(t *testing.T, script []byte) {
		s := New(&scriptConn{r: bytes.NewReader(script)}, Config{SessionBuffer: 1 << 20})
		st, err := s.OpenStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		s.Run()
		got, _ := io.ReadAll(st)
		if want := streamBytes(script, st.ID()); !bytes.Equal(got, want) {
			t.Fatalf("stream read %q, want %q", got, want)
		}
	})
}

// streamBytes is what the frames in script carry for stream sid: the
// reference the fuzz target checks the session against.
func streamBytes(script []byte, sid uint32) []byte {
	var out []byte
	for len(script) >= headerSize {
		var h header
		copy(h[:], script)
		if h.check() != nil || len(script) < headerSize+h.length() {
			break
		}
		payload := script[headerSize : headerSize+h.length()]
		script = script[headerSize+h.length():]
		if h.streamID() != sid {
			continue
		}
		switch h.cmd() {
		case cmdPSH:
			out = append(out, payload...)
		case cmdFIN:
			return out
		}
	}
	return out
}

// FuzzAcceptSession feeds an accepting session (the agent's end: Client,
// a backlog of 4) arbitrary bytes from the peer. It must end without a
// panic, accept exactly the streams the peer's SYNs open (even ids, not 0,
// new, while the backlog has room), and each must read exactly the
// payloads of the PSH frames sent to it after its SYN, up to its FIN.
func FuzzAcceptSession(f *testing.F) {
	f.Add(append(frame(version, cmdSYN, 2, nil), frame(version, cmdPSH, 2, []byte("hello"))...))
	f.Add(append(append(frame(version, cmdPSH, 4, []byte("early")), frame(version, cmdSYN, 4, nil)...),
		frame(version, cmdFIN, 4, nil)...))
	f.Add(append(frame(version, cmdSYN, 3, nil), frame(version, cmdSYN, 0, nil)...))
	f.Add(append(frame(version, cmdSYN, 2, nil), frame(version, cmdSYN, 2, nil)...))
	f.Add(append(frame(version, cmdSYN, 2, nil), frame(version, cmdUPD, 2, []byte{1, 0, 0, 0, 0, 0, 1, 0})...))
	f.Fuzz(func(t *testing.T, script []byte) {
		s := New(&scriptConn{r: bytes.NewReader(script)}, Config{Client: true, AcceptBacklog: 4, SessionBuffer: 1 << 20})
		s.Run()
		want := acceptedBytes(script, 4)
		var got []uint32
		for len(s.accepts) > 0 {
			st := <-s.accepts
			got = append(got, st.ID())
			b, _ := io.ReadAll(st)
			if w, ok := want[st.ID()]; !ok || !bytes.Equal(b, w) {
				t.Fatalf("stream %d read %q, want %q (accepted: %v)", st.ID(), b, w, ok)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("accepted streams %v, want %d", got, len(want))
		}
	})
}

// acceptedBytes is the reference for FuzzAcceptSession: the streams the
// frames in script open at a client accepting backlog of them, and what
// each carries.
func acceptedBytes(script []byte, backlog int) map[uint32][]byte {
	out := make(map[uint32][]byte)
	fin := make(map[uint32]bool)
	for len(script) >= headerSize {
		var h header
		copy(h[:], script)
		if h.check() != nil || len(script) < headerSize+h.length() {
			break
		}
		payload := script[headerSize : headerSize+h.length()]
		script = script[headerSize+h.length():]
		sid := h.streamID()
		_, open := out[sid]
		switch h.cmd() {
		case cmdSYN:
			if !open && sid != 0 && sid%2 == 0 && len(out) < backlog {
				out[sid] = []byte{}
			}
		case cmdPSH:
			if open && !fin[sid] {
				out[sid] = append(out[sid], payload...)
			}
		case cmdFIN:
			if open {
				fin[sid] = true
			}
		}
	}
	return out
}
