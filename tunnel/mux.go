package tunnel

import (
	"time"

	"github.com/xtaci/smux"
)

// smux settings shared by both ends. They are measured, not guessed: see
// the README's Performance section.
const (
	// MaxFrameSize is smux's largest frame; fewer frames mean fewer WebSocket
	// messages and syscalls.
	MaxFrameSize = 65535
	// StreamWindow is the per-stream receive window. One stream's speed is
	// at most StreamWindow ÷ round trip: 1 MiB carries ~100 Mbit/s at 80 ms.
	StreamWindow = 1 << 20
	// SessionBuffer caps what all streams of one tunnel may hold unread. It
	// is a cap, not an allocation; it must exceed StreamWindow several times
	// so one slow reader cannot stall the other streams.
	SessionBuffer = 16 << 20
	// KeepAliveInterval and KeepAliveTimeout find a dead tunnel within 30 s;
	// NOP frames every 10 s also keep load balancers' idle timers from firing.
	KeepAliveInterval = 10 * time.Second
	KeepAliveTimeout  = 30 * time.Second
)

// MuxConfig returns the smux configuration both ends use: version 2 for
// per-stream flow control.
func MuxConfig() *smux.Config {
	return &smux.Config{
		Version:           2,
		KeepAliveInterval: KeepAliveInterval,
		KeepAliveTimeout:  KeepAliveTimeout,
		MaxFrameSize:      MaxFrameSize,
		MaxReceiveBuffer:  SessionBuffer,
		MaxStreamBuffer:   StreamWindow,
	}
}
