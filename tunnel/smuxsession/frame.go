package smuxsession

import (
	"encoding/binary"
	"fmt"
)

// The frame of smux protocol version 2, as xtaci/smux v1.5.58 writes it:
//
//	 0         1        2                 4                         8
//	+---------+--------+--------+--------+--------+--------+--------+--------+
//	| version | cmd    | length (LE16)   | stream id (LE32)                  |
//	| 0x02    |        |                 |                                   |
//	+---------+--------+--------+--------+--------+--------+--------+--------+
//	| payload: length bytes (PSH: data; UPD: 8 bytes below; others: none)   |
//	+------------------------------------------------------------------------+
//
// UPD's payload, from the receiver of a stream's data to its sender:
//
//	+--------------------------+--------------------------+
//	| consumed (LE32)          | window (LE32)            |
//	+--------------------------+--------------------------+
//
// consumed counts the bytes the receiver's reader has taken from the stream
// since it opened (modulo 2³²); window is the most the receiver lets be in
// flight, so the sender may have sent up to consumed+window. Until the
// first UPD a sender assumes initialPeerWindow.
const (
	version    = 2
	headerSize = 8
	updSize    = 8

	cmdSYN byte = 0 // open a stream
	cmdFIN byte = 1 // the sender writes no more on the stream (half-close)
	cmdPSH byte = 2 // data
	cmdNOP byte = 3 // keep-alive, stream id 0
	cmdUPD byte = 4 // flow control, v2

	// initialPeerWindow is smux's guess of a new stream's peer window.
	initialPeerWindow = 256 << 10
)

// header is one frame header as it is on the wire.
type header [headerSize]byte

func (h *header) cmd() byte        { return h[1] }
func (h *header) length() int      { return int(binary.LittleEndian.Uint16(h[2:])) }
func (h *header) streamID() uint32 { return binary.LittleEndian.Uint32(h[4:]) }

// put fills h for a frame of cmd on stream sid with n bytes of payload.
func (h *header) put(cmd byte, n int, sid uint32) {
	h[0] = version
	h[1] = cmd
	binary.LittleEndian.PutUint16(h[2:], uint16(n))
	binary.LittleEndian.PutUint32(h[4:], sid)
}

// check returns an error wrapping ErrProtocol for a header smux v2 does
// not allow; frames of unknown streams are allowed (smux ignores them).
func (h *header) check() error {
	if h[0] != version {
		return fmt.Errorf("%w: version %d", ErrProtocol, h[0])
	}
	switch n := h.length(); h.cmd() {
	case cmdSYN, cmdFIN, cmdNOP:
		if n != 0 {
			return fmt.Errorf("%w: command %d with %d bytes of payload", ErrProtocol, h.cmd(), n)
		}
	case cmdUPD:
		if n != updSize {
			return fmt.Errorf("%w: window update of %d bytes", ErrProtocol, n)
		}
	case cmdPSH:
	default:
		return fmt.Errorf("%w: unknown command %d", ErrProtocol, h.cmd())
	}
	return nil
}
