package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
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

// WTOp is a WebTunnel frame's opcode.
type WTOp byte

const (
	WTOpData    WTOp = 0x00
	WTOpOpen    WTOp = 0x01
	WTOpClose   WTOp = 0x02
	WTOpConfirm WTOp = 0x11
	WTOpProps   WTOp = 0x40
	WTOpError   WTOp = 0x80
	WTOpFault   WTOp = 0x81
)

func (op WTOp) String() string {
	switch op {
	case WTOpData:
		return "data"
	case WTOpOpen:
		return "open"
	case WTOpClose:
		return "close"
	case WTOpConfirm:
		return "confirm"
	case WTOpProps:
		return "property update"
	case WTOpError:
		return "error"
	case WTOpFault:
		return "open fault"
	default:
		return fmt.Sprintf("op(0x%02x)", byte(op))
	}
}

// hasArg reports whether frames of op carry a port or an error code after
// the header.
func (op WTOp) hasArg() bool {
	return op == WTOpOpen || op == WTOpError || op == WTOpFault
}

// WTCode is the error code of an ERROR or FAULT frame.
type WTCode uint16

const (
	WTErrBadChannel   WTCode = 1 // no such channel
	WTErrNotForwarded WTCode = 2 // port not in the agent's webtunnel.ports
	WTErrRefused      WTCode = 3 // the device port refused the connection
	WTErrTimeout      WTCode = 4 // the device port did not answer in time
	WTErrSocket       WTCode = 5 // another socket error
	WTErrProtocol     WTCode = 6 // the peer broke the protocol
	WTErrChannelInUse WTCode = 7 // OPEN for a channel that is open
)

func (c WTCode) String() string {
	switch c {
	case WTErrBadChannel:
		return "bad channel"
	case WTErrNotForwarded:
		return "port not forwarded"
	case WTErrRefused:
		return "connection refused"
	case WTErrTimeout:
		return "timeout"
	case WTErrSocket:
		return "socket error"
	case WTErrProtocol:
		return "protocol error"
	case WTErrChannelInUse:
		return "channel in use"
	default:
		return fmt.Sprintf("error %d", uint16(c))
	}
}

// Err returns the failure c reports as the *OpenError our own agent's
// answers become, so callers map both wires the same way with errors.Is:
// 2 is ErrPortNotAllowed (403), 3 ErrRefused (502), 4 ErrTimeout (504), and
// every other code ErrDeviceFailure (502) with the code's name as message.
func (c WTCode) Err() error {
	switch c {
	case WTErrNotForwarded:
		return &OpenError{Status: StatusNotAllowed}
	case WTErrRefused:
		return &OpenError{Status: StatusRefused}
	case WTErrTimeout:
		return &OpenError{Status: StatusTimeout}
	default:
		return &OpenError{Status: StatusOther, Message: "webtunnel " + c.String()}
	}
}

const (
	// WTHeaderLen is the length of every frame's header: opcode, flags,
	// channel. OPEN, ERROR and FAULT add 2 bytes, DATA its payload.
	WTHeaderLen = 4
	// MaxWTPayload bounds the payload of a DATA frame toward an agent or a
	// client tool: their receive buffer holds 2,052 bytes, one header and
	// 2,048 bytes, and a longer message breaks the tunnel.
	MaxWTPayload = 2048
	// MaxWTMessage bounds a frame ParseWTFrame accepts: the WebSocket
	// message limit of the tunnel endpoint. Agents send what one read of
	// the local socket returned, which may exceed MaxWTPayload.
	MaxWTMessage = maxMessage

	wtArgLen       = 2 // port or error code
	wtMaxVarintLen = 5 // a UInt32 in 7-bit groups
	wtMaxProps     = 255
)

// ErrBadWTFrame: a WebTunnel frame could not be decoded, or cannot be
// encoded. A peer that sent it breaks the protocol (WebTunnel's error 6).
var ErrBadWTFrame = errors.New("bad webtunnel frame")

// WTFrame is a decoded WebTunnel frame. Which fields are set depends on Op.
type WTFrame struct {
	Op      WTOp
	Flags   byte // 0 from every known sender; kept so encoding is exact
	Channel uint16
	Port    uint16 // WTOpOpen
	Code    WTCode // WTOpError, WTOpFault
	// Payload is the data of a WTOpData frame. ParseWTFrame returns a
	// sub-slice of the message it was given, not a copy: it is valid while
	// the caller does not reuse that message's buffer.
	Payload []byte
	Props   []WTProperty // WTOpProps, in the order sent
}

// WTProperty is one key and value of a property update frame. Values are
// sent unquoted, unlike the X-PTTH-Set-Property headers.
type WTProperty struct {
	Key, Value string
}

// AppendWTHeader appends a frame header to dst with flags 0: 4 bytes, and
// arg (the port of an OPEN, the code of an ERROR or FAULT) for the opcodes
// that carry it; arg is ignored for the others. For the DATA path without a
// copy, append the header to buf[:0] of a buffer of WTHeaderLen+MaxWTPayload
// bytes and read the payload into buf[WTHeaderLen:].
func AppendWTHeader(dst []byte, op WTOp, ch uint16, arg uint16) []byte {
	dst = append(dst, byte(op), 0, byte(ch>>8), byte(ch))
	if op.hasArg() {
		dst = append(dst, byte(arg>>8), byte(arg))
	}
	return dst
}

// AppendWTData appends a DATA frame carrying payload on channel ch to dst.
// It panics if payload is longer than MaxWTPayload: the caller splits data
// before it gets here, because an agent or client cannot take a longer frame.
func AppendWTData(dst []byte, ch uint16, payload []byte) []byte {
	if len(payload) > MaxWTPayload {
		panic(fmt.Sprintf("tunnel: webtunnel data payload of %d bytes exceeds %d", len(payload), MaxWTPayload))
	}
	dst = AppendWTHeader(dst, WTOpData, ch, 0)
	return append(dst, payload...)
}

// AppendWTFrame appends f, encoded, to dst: the inverse of ParseWTFrame,
// flags included, so what ParseWTFrame accepts encodes to the bytes it came
// from. It fails, leaving dst as it was, for an unknown opcode, more than 255
// properties, or a frame longer than MaxWTMessage. It does not hold DATA to
// MaxWTPayload; AppendWTData does.
func AppendWTFrame(dst []byte, f WTFrame) ([]byte, error) {
	switch f.Op {
	case WTOpData, WTOpOpen, WTOpClose, WTOpConfirm, WTOpProps, WTOpError, WTOpFault:
	default:
		return dst, fmt.Errorf("%w: encode unknown opcode 0x%02x", ErrBadWTFrame, byte(f.Op))
	}
	if f.Op == WTOpProps && len(f.Props) > wtMaxProps {
		return dst, fmt.Errorf("%w: encode %d properties, at most %d", ErrBadWTFrame, len(f.Props), wtMaxProps)
	}
	if n := wtFrameLen(f); n > MaxWTMessage {
		return dst, fmt.Errorf("%w: encode %s frame of %d bytes, at most %d", ErrBadWTFrame, f.Op, n, MaxWTMessage)
	}
	var arg uint16
	switch f.Op {
	case WTOpOpen:
		arg = f.Port
	case WTOpError, WTOpFault:
		arg = uint16(f.Code)
	}
	start := len(dst)
	dst = AppendWTHeader(dst, f.Op, f.Channel, arg)
	dst[start+1] = f.Flags
	switch f.Op {
	case WTOpData:
		dst = append(dst, f.Payload...)
	case WTOpProps:
		dst = append(dst, byte(len(f.Props)))
		for _, p := range f.Props {
			dst = appendWTString(dst, p.Key)
			dst = appendWTString(dst, p.Value)
		}
	}
	return dst, nil
}

// wtFrameLen is the encoded length of f, whose opcode is known.
func wtFrameLen(f WTFrame) int {
	n := WTHeaderLen
	switch {
	case f.Op.hasArg():
		n += wtArgLen
	case f.Op == WTOpData:
		n += len(f.Payload)
	case f.Op == WTOpProps:
		n++
		for _, p := range f.Props {
			n += wtVarintLen(len(p.Key)) + len(p.Key) + wtVarintLen(len(p.Value)) + len(p.Value)
		}
	}
	return n
}

func wtVarintLen(v int) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func appendWTString(dst []byte, s string) []byte {
	v := uint(len(s))
	for ; v >= 0x80; v >>= 7 {
		dst = append(dst, byte(v)|0x80)
	}
	dst = append(dst, byte(v))
	return append(dst, s...)
}

// ParseWTFrame decodes one WebSocket message as a frame. It accepts exactly
// the frames AppendWTFrame writes: a known opcode, the length that opcode
// has (no trailing bytes), and for a property update a count the frame can
// hold and strings whose lengths are shortest-form varints of at most 5
// bytes that stay inside the frame. A DATA payload is a sub-slice of msg.
// Every failure wraps ErrBadWTFrame.
func ParseWTFrame(msg []byte) (WTFrame, error) {
	if len(msg) > MaxWTMessage {
		return WTFrame{}, fmt.Errorf("%w: message of %d bytes, at most %d", ErrBadWTFrame, len(msg), MaxWTMessage)
	}
	if len(msg) < WTHeaderLen {
		return WTFrame{}, fmt.Errorf("%w: message of %d bytes, shorter than a header", ErrBadWTFrame, len(msg))
	}
	f := WTFrame{Op: WTOp(msg[0]), Flags: msg[1], Channel: binary.BigEndian.Uint16(msg[2:4])}
	body := msg[WTHeaderLen:]
	switch f.Op {
	case WTOpData:
		f.Payload = body
	case WTOpClose, WTOpConfirm:
		if len(body) != 0 {
			return WTFrame{}, fmt.Errorf("%w: %s frame with %d trailing bytes", ErrBadWTFrame, f.Op, len(body))
		}
	case WTOpOpen, WTOpError, WTOpFault:
		if len(body) != wtArgLen {
			return WTFrame{}, fmt.Errorf("%w: %s frame of %d bytes, want %d", ErrBadWTFrame, f.Op, len(msg), WTHeaderLen+wtArgLen)
		}
		arg := binary.BigEndian.Uint16(body)
		if f.Op == WTOpOpen {
			f.Port = arg
		} else {
			f.Code = WTCode(arg)
		}
	case WTOpProps:
		props, err := parseWTProps(body)
		if err != nil {
			return WTFrame{}, err
		}
		f.Props = props
	default:
		return WTFrame{}, fmt.Errorf("%w: unknown opcode 0x%02x", ErrBadWTFrame, msg[0])
	}
	return f, nil
}

// parseWTProps decodes the body of a property update: a count and that many
// key and value strings, filling the body exactly.
func parseWTProps(b []byte) ([]WTProperty, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: property update without a count", ErrBadWTFrame)
	}
	n := int(b[0])
	b = b[1:]
	// Each property takes at least two bytes (two empty strings): refuse a
	// count the frame cannot hold before allocating for it.
	if 2*n > len(b) {
		return nil, fmt.Errorf("%w: %d properties do not fit in %d bytes", ErrBadWTFrame, n, len(b))
	}
	props := make([]WTProperty, n)
	for i := range props {
		var err error
		if props[i].Key, b, err = readWTString(b); err != nil {
			return nil, fmt.Errorf("property %d key: %w", i, err)
		}
		if props[i].Value, b, err = readWTString(b); err != nil {
			return nil, fmt.Errorf("property %d value: %w", i, err)
		}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: property update with %d trailing bytes", ErrBadWTFrame, len(b))
	}
	return props, nil
}

// readWTString reads a varint length and that many bytes from b, and returns
// the string and the rest of b.
func readWTString(b []byte) (string, []byte, error) {
	var v uint64
	for i := 0; ; i++ {
		if i == wtMaxVarintLen {
			return "", nil, fmt.Errorf("%w: string length varint longer than %d bytes", ErrBadWTFrame, wtMaxVarintLen)
		}
		if i == len(b) {
			return "", nil, fmt.Errorf("%w: string length varint cut short", ErrBadWTFrame)
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 != 0 {
			continue
		}
		// A last byte of 0 after others adds nothing: the same length had a
		// shorter form. Refusing it keeps one encoding per frame.
		if c == 0 && i > 0 {
			return "", nil, fmt.Errorf("%w: string length varint not in shortest form", ErrBadWTFrame)
		}
		b = b[i+1:]
		break
	}
	if v > uint64(len(b)) {
		return "", nil, fmt.Errorf("%w: string of %d bytes, only %d left in the frame", ErrBadWTFrame, v, len(b))
	}
	return string(b[:v]), b[v:], nil
}
