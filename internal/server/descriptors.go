package server

import (
	"log/slog"
	"os"
)

// descriptorHeadroom is what a reflector needs beyond one descriptor per
// connected device: its listeners, database and control socket, users'
// connections (one per CONNECT or page request in flight) and a storm's
// handshakes beyond the pending bound that are answered 503.
const descriptorHeadroom = 1024

// checkDescriptors logs the descriptor limit at start, and warns when it
// is below what devices connected at once need: one descriptor each, plus
// the pending handshakes' and descriptorHeadroom. limit is 0 when it
// could not be read.
func checkDescriptors(log *slog.Logger, limit uint64, devices, pending int) {
	if limit == 0 {
		log.Warn("descriptor limit: unknown on this system")
		return
	}
	need := uint64(devices) + uint64(max(pending, 0)) + descriptorHeadroom
	if limit < need {
		log.Warn("descriptor limit below what every device connected at once needs: raise it (systemd LimitNOFILE=, ulimit -Hn)",
			"limit", limit, "need", need, "devices", devices, "pending_handshakes", pending, "headroom", descriptorHeadroom)
		return
	}
	log.Info("descriptor limit", "limit", limit, "devices", devices)
}

// openDescriptors counts the process's open descriptors (/proc/self/fd,
// Linux).
func openDescriptors() (int, bool) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	return len(names) - 1, true // less the descriptor of the listing itself
}
