package tunnel

import (
	"time"

	"github.com/reflector-dev/reflector/tunnel/smuxsession"
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
	// It is also the most one stream can hold unread at the receiving end.
	StreamWindow = 1 << 20
	// MaxDeviceStreams caps the streams open to one device at once, of
	// either wire: Hub.Dial refuses more with ErrDeviceBusy.
	MaxDeviceStreams = 64
	// SessionBuffer caps what all streams of one tunnel may hold unread;
	// when they hold that much, smux stops reading the tunnel for every
	// stream. It is a cap, not an allocation (an idle tunnel costs nothing
	// for it), and it exceeds MaxDeviceStreams whole windows, so streams
	// that nobody reads can never stall the others: at most
	// MaxDeviceStreams × StreamWindow = 64 MiB is held, the bucket keeps
	// 1 MiB.
	SessionBuffer = (MaxDeviceStreams + 1) * StreamWindow
	// LegacySessionBuffer is the SessionBuffer of agents released before
	// MaxDeviceStreams (16 MiB). Each end sets its own, unannounced, so
	// the reflector cannot raise theirs: toward such an agent, 16 streams
	// whose device port reads nothing stall its tunnel. The proxy's cap
	// per user and device stays below it (proxy.MaxUserStreams).
	LegacySessionBuffer = 16 << 20
	// KeepAliveInterval and KeepAliveTimeout find a dead tunnel within 30 s;
	// NOP frames every 10 s also keep load balancers' idle timers from firing.
	KeepAliveInterval = 10 * time.Second
	KeepAliveTimeout  = 30 * time.Second
)

// MuxConfig returns the smux configuration of an agent on stock smux, the
// smux client: version 2 for per-stream flow control. The agent's own end
// is AgentMuxConfig's, the reflector's serverMuxConfig's: the same
// settings on smuxsession.
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

// keeper sends the keep-alives of every tunnel of this process on our wire,
// from one goroutine (issue 16: a ticker per session cost 18-25 % of a core
// at 10,000 idle devices).
var keeper = smuxsession.NewKeeper(KeepAliveInterval, KeepAliveTimeout)

// serverMuxConfig is the reflector's end of MuxConfig. A frame write that
// makes no progress for KeepAliveTimeout ends the session: the agent has
// not taken a byte for as long as its silence would end it.
func serverMuxConfig(k *smuxsession.Keeper) smuxsession.Config {
	return smuxsession.Config{
		MaxFrameSize:  MaxFrameSize,
		StreamWindow:  StreamWindow,
		SessionBuffer: SessionBuffer,
		WriteTimeout:  KeepAliveTimeout,
		Keeper:        k,
	}
}

// AgentMuxConfig is the agent's end of the tunnel on smuxsession: the smux
// client, accepting the streams the reflector opens (at most
// MaxDeviceStreams waiting for the agent to take them; the reflector
// opens no more at once), with the settings of MuxConfig and the
// process's one Keeper. As on the reflector's end, a frame write that
// makes no progress for KeepAliveTimeout ends the session.
func AgentMuxConfig() smuxsession.Config {
	c := serverMuxConfig(keeper)
	c.Client = true
	c.AcceptBacklog = MaxDeviceStreams
	return c
}
