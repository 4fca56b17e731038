package tunnel

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The stream-open header, written by the reflector as the first bytes of every
// smux stream it opens (PROTOCOL.md, "Stream open"):
//
//	+---------+------+-----------+---+------------------+
//	| version | kind | port (BE) | n | n bytes: client  |
//	|  1 byte |  1   |  2 bytes  | 1 | address, for log |
//	+---------+------+-----------+---+------------------+
//
// and the agent's reply, the first bytes it writes back:
//
//	+--------+---+---------------------+
//	| status | n | n bytes: message    |
//	+--------+---+---------------------+
//
// Bytes of the connection itself follow the reply only when status is 0.
const (
	// HeaderVersion is the only open-header version.
	HeaderVersion = 1
	// KindTCP asks the agent to dial a TCP port.
	KindTCP = 1

	openFixedLen  = 5   // version, kind, port, n
	replyFixedLen = 2   // status, n
	maxShortLen   = 255 // longest client address or message
)

// Status is the agent's answer to a stream open.
type Status byte

const (
	StatusOK         Status = 0
	StatusNotAllowed Status = 1
	StatusRefused    Status = 2
	StatusTimeout    Status = 3
	StatusOther      Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNotAllowed:
		return "port not allowed"
	case StatusRefused:
		return "refused"
	case StatusTimeout:
		return "timeout"
	default:
		return fmt.Sprintf("other(%d)", byte(s))
	}
}

// OpenRequest is a decoded open header.
type OpenRequest struct {
	Port   uint16
	Client string // the user's address as the reflector saw it; for logs only
}

// AppendOpen appends the open header for port to dst. A client address longer
// than 255 bytes is truncated.
func AppendOpen(dst []byte, port uint16, client string) []byte {
	if len(client) > maxShortLen {
		client = client[:maxShortLen]
	}
	dst = append(dst, HeaderVersion, KindTCP, byte(port>>8), byte(port), byte(len(client)))
	return append(dst, client...)
}

// ReadOpen reads exactly one open header from r, and nothing past it.
func ReadOpen(r io.Reader) (OpenRequest, error) {
	var buf [openFixedLen + maxShortLen]byte
	if _, err := io.ReadFull(r, buf[:openFixedLen]); err != nil {
		return OpenRequest{}, fmt.Errorf("read open header: %w", err)
	}
	if buf[0] != HeaderVersion {
		return OpenRequest{}, fmt.Errorf("%w: version %d", ErrBadHeader, buf[0])
	}
	if buf[1] != KindTCP {
		return OpenRequest{}, fmt.Errorf("%w: kind %d", ErrBadHeader, buf[1])
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	if port == 0 {
		return OpenRequest{}, fmt.Errorf("%w: port 0", ErrBadHeader)
	}
	n := int(buf[4])
	if _, err := io.ReadFull(r, buf[openFixedLen:openFixedLen+n]); err != nil {
		return OpenRequest{}, fmt.Errorf("read open header address: %w", err)
	}
	return OpenRequest{Port: port, Client: string(buf[openFixedLen : openFixedLen+n])}, nil
}

// AppendReply appends the agent's reply to dst. A message longer than 255
// bytes is truncated.
func AppendReply(dst []byte, status Status, msg string) []byte {
	if len(msg) > maxShortLen {
		msg = msg[:maxShortLen]
	}
	dst = append(dst, byte(status), byte(len(msg)))
	return append(dst, msg...)
}

// WriteReply writes the agent's reply to w in one Write.
func WriteReply(w io.Writer, status Status, msg string) error {
	var buf [replyFixedLen + maxShortLen]byte
	if _, err := w.Write(AppendReply(buf[:0], status, msg)); err != nil {
		return fmt.Errorf("write open reply: %w", err)
	}
	return nil
}

// ReadReply reads exactly one reply from r, and nothing past it, so bytes the
// device sends first (an SSH banner) stay in the stream.
func ReadReply(r io.Reader) (Status, string, error) {
	var buf [replyFixedLen + maxShortLen]byte
	if _, err := io.ReadFull(r, buf[:replyFixedLen]); err != nil {
		return 0, "", fmt.Errorf("read open reply: %w", err)
	}
	n := int(buf[1])
	if n == 0 {
		return Status(buf[0]), "", nil
	}
	if _, err := io.ReadFull(r, buf[replyFixedLen:replyFixedLen+n]); err != nil {
		return 0, "", fmt.Errorf("read open reply message: %w", err)
	}
	return Status(buf[0]), string(buf[replyFixedLen : replyFixedLen+n]), nil
}
