package webtunnel

import "encoding/binary"

// The tunnel writes its frames to the agent as WebSocket messages itself,
// straight onto the TLS connection, rather than through gorilla's writer:
// gorilla keeps a write buffer of its own per connection (or, with a
// WriteBufferPool, allocates on every message to box the buffer it returns
// to the pool), and an idle tunnel would hold 4.8 KiB for nothing (issue
// 16). Each message is one Write, so crypto/tls seals it as one record, and
// writes of whole messages never interleave with gorilla's own (pongs and
// close frames, which it writes with one Write each too). Our close frame
// is sent under the tunnel's write lock (sendClose), so no message follows
// it; the one gorilla sends by itself on a protocol error may be followed
// by a message being written as the connection closes.
//
// A message from the server is one unmasked, unfragmented binary frame
// (RFC 6455 §5.2), its length in the shortest form:
//
//	byte 0x82 (FIN, opcode 2), byte n                      if n <= 125
//	byte 0x82, byte 126, uint16 n (big endian)             if n <= 65535
//	byte 0x82, byte 127, uint64 n                          (never: frames we send are shorter)
//	n bytes: one WebTunnel frame

// msgHeadroom is the room kept in front of a frame we send, for its
// message header: frames are built at buf[msgHeadroom:] and wsMessage puts
// the header right before them, so header and frame go out in one Write
// without a copy.
const msgHeadroom = 4

// wsMessage writes the message header of the frame buf[msgHeadroom:] into
// the end of buf[:msgHeadroom] and returns header and frame. The frame is
// shorter than 65,536 bytes (MaxPayload bounds what we send).
func wsMessage(buf []byte) []byte {
	n := len(buf) - msgHeadroom
	if n <= 125 {
		buf[2], buf[3] = 0x82, byte(n)
		return buf[2:]
	}
	buf[0], buf[1] = 0x82, 126
	binary.BigEndian.PutUint16(buf[2:msgHeadroom], uint16(n))
	return buf
}
