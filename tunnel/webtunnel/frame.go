package webtunnel

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/reflector-dev/reflector/tunnel"
)

// The frames of macchina.io REMOTE's WebTunnel protocol (PROTOCOL.md,
// "WebTunnel frames"), spoken by WebTunnelAgent devices (issue 9). Each frame
// is one binary WebSocket message; integers are big-endian:
//
//	+--------+--------+-----------------+-----------------------+
//	| opcode | flags  | channel (BE)    | by opcode:            |
//	| 1 byte | 1 byte | 2 bytes         | port or code (2, BE), |
//	|        |        |                 | data, or properties   |
//	+--------+--------+-----------------+-----------------------+
//
//	DATA     00 FF CH CH + payload bytes (possibly none)
//	OPEN     01 FF CH CH PP PP           port to dial on the device
//	CLOSE    02 FF CH CH                 half-close
//	CONFIRM  11 FF CH CH                 open succeeded
//	PROPS    40 FF CH CH NN + NN × (key, value)
//	ERROR    80 FF CH CH EE EE           channel closed at once
//	FAULT    81 FF CH CH EE EE           open failed
//
// FF is the flags byte: WebTunnel sends 0 and ignores it on receipt. A
// property string is a varint length (7 bits a byte, lowest group first, high
// bit set on every byte but the last; at most 5 bytes, as Poco's
// BinaryWriter writes a UInt32) followed by that many bytes.

// Op is a WebTunnel frame's opcode.
type Op byte

const (
	OpData    Op = 0x00
	OpOpen    Op = 0x01
	OpClose   Op = 0x02
	OpConfirm Op = 0x11
	OpProps   Op = 0x40
	OpError   Op = 0x80
	OpFault   Op = 0x81
)

func (op Op) String() string {
	switch op {
	case OpData:
		return "data"
	case OpOpen:
		return "open"
	case OpClose:
		return "close"
	case OpConfirm:
		return "confirm"
	case OpProps:
		return "property update"
	case OpError:
		return "error"
	case OpFault:
		return "open fault"
	default:
		return fmt.Sprintf("op(0x%02x)", byte(op))
	}
}

// hasArg reports whether frames of op carry a port or an error code after
// the header.
func (op Op) hasArg() bool {
	return op == OpOpen || op == OpError || op == OpFault
}

// Code is the error code of an ERROR or FAULT frame.
type Code uint16

const (
	CodeBadChannel   Code = 1 // no such channel
	CodeNotForwarded Code = 2 // port not in the agent's webtunnel.ports
	CodeRefused      Code = 3 // the device port refused the connection
	CodeTimeout      Code = 4 // the device port did not answer in time
	CodeSocket       Code = 5 // another socket error
	CodeProtocol     Code = 6 // the peer broke the protocol
	CodeChannelInUse Code = 7 // OPEN for a channel that is open
)

func (c Code) String() string {
	switch c {
	case CodeBadChannel:
		return "bad channel"
	case CodeNotForwarded:
		return "port not forwarded"
	case CodeRefused:
		return "connection refused"
	case CodeTimeout:
		return "timeout"
	case CodeSocket:
		return "socket error"
	case CodeProtocol:
		return "protocol error"
	case CodeChannelInUse:
		return "channel in use"
	default:
		return fmt.Sprintf("error %d", uint16(c))
	}
}

// Err returns the failure c reports as the *tunnel.OpenError our own agent's
// answers become, so callers map both wires the same way with errors.Is:
// 2 is ErrPortNotAllowed (403), 3 ErrRefused (502), 4 tunnel.ErrTimeout (504), and
// every other code tunnel.ErrDeviceFailure (502) with the code's name as message.
func (c Code) Err() error {
	switch c {
	case CodeNotForwarded:
		return &tunnel.OpenError{Status: tunnel.StatusNotAllowed}
	case CodeRefused:
		return &tunnel.OpenError{Status: tunnel.StatusRefused}
	case CodeTimeout:
		return &tunnel.OpenError{Status: tunnel.StatusTimeout}
	default:
		return &tunnel.OpenError{Status: tunnel.StatusOther, Message: "webtunnel " + c.String()}
	}
}

const (
	// HeaderLen is the length of every frame's header: opcode, flags,
	// channel. OPEN, ERROR and FAULT add 2 bytes, DATA its payload.
	HeaderLen = 4
	// MaxPayload bounds the payload of a DATA frame toward an agent or a
	// client tool: their receive buffer holds 2,052 bytes, one header and
	// 2,048 bytes, and a longer message breaks the tunnel.
	MaxPayload = 2048
	// MaxMessage bounds a frame ParseFrame accepts: the WebSocket
	// message limit of the tunnel endpoint. Agents send what one read of
	// the local socket returned, which may exceed MaxPayload.
	MaxMessage = tunnel.MaxMessage

	argLen       = 2 // port or error code
	maxVarintLen = 5 // a UInt32 in 7-bit groups
	maxProps     = 255
)

// ErrBadFrame: a WebTunnel frame could not be decoded, or cannot be
// encoded. A peer that sent it breaks the protocol (WebTunnel's error 6).
var ErrBadFrame = errors.New("bad webtunnel frame")

// Frame is a decoded WebTunnel frame. Which fields are set depends on Op.
type Frame struct {
	Op      Op
	Flags   byte // 0 from every known sender; kept so encoding is exact
	Channel uint16
	Port    uint16 // OpOpen
	Code    Code   // OpError, OpFault
	// Payload is the data of a OpData frame. ParseFrame returns a
	// sub-slice of the message it was given, not a copy: it is valid while
	// the caller does not reuse that message's buffer.
	Payload []byte
	Props   []Property // OpProps, in the order sent
}

// Property is one key and value of a property update frame. Values are
// sent unquoted, unlike the X-PTTH-Set-Property headers.
type Property struct {
	Key, Value string
}

// AppendHeader appends a frame header to dst with flags 0: 4 bytes, and
// arg (the port of an OPEN, the code of an ERROR or FAULT) for the opcodes
// that carry it; arg is ignored for the others. For the DATA path without a
// copy, append the header to buf[:0] of a buffer of HeaderLen+MaxPayload
// bytes and read the payload into buf[HeaderLen:].
func AppendHeader(dst []byte, op Op, ch uint16, arg uint16) []byte {
	dst = append(dst, byte(op), 0, byte(ch>>8), byte(ch))
	if op.hasArg() {
		dst = append(dst, byte(arg>>8), byte(arg))
	}
	return dst
}

// AppendData appends a DATA frame carrying payload on channel ch to dst.
// It panics if payload is longer than MaxPayload: the caller splits data
// before it gets here, because an agent or client cannot take a longer frame.
func AppendData(dst []byte, ch uint16, payload []byte) []byte {
	if len(payload) > MaxPayload {
		panic(fmt.Sprintf("tunnel: webtunnel data payload of %d bytes exceeds %d", len(payload), MaxPayload))
	}
	dst = AppendHeader(dst, OpData, ch, 0)
	return append(dst, payload...)
}

// AppendFrame appends f, encoded, to dst: the inverse of ParseFrame,
// flags included, so what ParseFrame accepts encodes to the bytes it came
// from. It fails, leaving dst as it was, for an unknown opcode, more than 255
// properties, or a frame longer than MaxMessage. It does not hold DATA to
// MaxPayload; AppendData does.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	switch f.Op {
	case OpData, OpOpen, OpClose, OpConfirm, OpProps, OpError, OpFault:
	default:
		return dst, fmt.Errorf("%w: encode unknown opcode 0x%02x", ErrBadFrame, byte(f.Op))
	}
	if f.Op == OpProps && len(f.Props) > maxProps {
		return dst, fmt.Errorf("%w: encode %d properties, at most %d", ErrBadFrame, len(f.Props), maxProps)
	}
	if n := frameLen(f); n > MaxMessage {
		return dst, fmt.Errorf("%w: encode %s frame of %d bytes, at most %d", ErrBadFrame, f.Op, n, MaxMessage)
	}
	var arg uint16
	switch f.Op {
	case OpOpen:
		arg = f.Port
	case OpError, OpFault:
		arg = uint16(f.Code)
	}
	start := len(dst)
	dst = AppendHeader(dst, f.Op, f.Channel, arg)
	dst[start+1] = f.Flags
	switch f.Op {
	case OpData:
		dst = append(dst, f.Payload...)
	case OpProps:
		dst = append(dst, byte(len(f.Props)))
		for _, p := range f.Props {
			dst = appendString(dst, p.Key)
			dst = appendString(dst, p.Value)
		}
	}
	return dst, nil
}

// frameLen is the encoded length of f, whose opcode is known.
func frameLen(f Frame) int {
	n := HeaderLen
	switch {
	case f.Op.hasArg():
		n += argLen
	case f.Op == OpData:
		n += len(f.Payload)
	case f.Op == OpProps:
		n++
		for _, p := range f.Props {
			n += varintLen(len(p.Key)) + len(p.Key) + varintLen(len(p.Value)) + len(p.Value)
		}
	}
	return n
}

func varintLen(v int) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	v := uint(len(s))
	for ; v >= 0x80; v >>= 7 {
		dst = append(dst, byte(v)|0x80)
	}
	dst = append(dst, byte(v))
	return append(dst, s...)
}

// ParseFrame decodes one WebSocket message as a frame. It accepts exactly
// the frames AppendFrame writes: a known opcode, the length that opcode
// has (no trailing bytes), and for a property update a count the frame can
// hold and strings whose lengths are shortest-form varints of at most 5
// bytes that stay inside the frame. A DATA payload is a sub-slice of msg.
// Every failure wraps ErrBadFrame.
func ParseFrame(msg []byte) (Frame, error) {
	if len(msg) > MaxMessage {
		return Frame{}, fmt.Errorf("%w: message of %d bytes, at most %d", ErrBadFrame, len(msg), MaxMessage)
	}
	if len(msg) < HeaderLen {
		return Frame{}, fmt.Errorf("%w: message of %d bytes, shorter than a header", ErrBadFrame, len(msg))
	}
	f := Frame{Op: Op(msg[0]), Flags: msg[1], Channel: binary.BigEndian.Uint16(msg[2:4])}
	body := msg[HeaderLen:]
	switch f.Op {
	case OpData:
		f.Payload = body
	case OpClose, OpConfirm:
		if len(body) != 0 {
			return Frame{}, fmt.Errorf("%w: %s frame with %d trailing bytes", ErrBadFrame, f.Op, len(body))
		}
	case OpOpen, OpError, OpFault:
		if len(body) != argLen {
			return Frame{}, fmt.Errorf("%w: %s frame of %d bytes, want %d", ErrBadFrame, f.Op, len(msg), HeaderLen+argLen)
		}
		arg := binary.BigEndian.Uint16(body)
		if f.Op == OpOpen {
			f.Port = arg
		} else {
			f.Code = Code(arg)
		}
	case OpProps:
		props, err := parseProps(body)
		if err != nil {
			return Frame{}, err
		}
		f.Props = props
	default:
		return Frame{}, fmt.Errorf("%w: unknown opcode 0x%02x", ErrBadFrame, msg[0])
	}
	return f, nil
}

// parseProps decodes the body of a property update: a count and that many
// key and value strings, filling the body exactly.
func parseProps(b []byte) ([]Property, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: property update without a count", ErrBadFrame)
	}
	n := int(b[0])
	b = b[1:]
	// Each property takes at least two bytes (two empty strings): refuse a
	// count the frame cannot hold before allocating for it.
	if 2*n > len(b) {
		return nil, fmt.Errorf("%w: %d properties do not fit in %d bytes", ErrBadFrame, n, len(b))
	}
	props := make([]Property, n)
	for i := range props {
		var err error
		if props[i].Key, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("property %d key: %w", i, err)
		}
		if props[i].Value, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("property %d value: %w", i, err)
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: property update with %d trailing bytes", ErrBadFrame, len(b))
	}
	return props, nil
}

// readString reads a varint length and that many bytes from b, and returns
// the string and the rest of b.
func readString(b []byte) (string, []byte, error) {
	var v uint64
	for i := 0; ; i++ {
		if i == maxVarintLen {
			return "", nil, fmt.Errorf("%w: string length varint longer than %d bytes", ErrBadFrame, maxVarintLen)
		}
		if i == len(b) {
			return "", nil, fmt.Errorf("%w: string length varint cut short", ErrBadFrame)
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 != 0 {
			continue
		}
		// A last byte of 0 after others adds nothing: the same length had a
		// shorter form. Refusing it keeps one encoding per frame.
		if c == 0 && i > 0 {
			return "", nil, fmt.Errorf("%w: string length varint not in shortest form", ErrBadFrame)
		}
		b = b[i+1:]
		break
	}
	if v > uint64(len(b)) {
		return "", nil, fmt.Errorf("%w: string of %d bytes, only %d left in the frame", ErrBadFrame, v, len(b))
	}
	return string(b[:v]), b[v:], nil
}
