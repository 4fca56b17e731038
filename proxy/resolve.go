package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/tunnel"
)

// target is a device port a request asks for.
type target struct {
	device string
	port   uint16 // 0: the device's HTTP port
}

// resolveHost turns a request's host[:port] into a device and port. The host
// must be <id>.<domain> or a bare <id>; IP addresses, other domains and the
// reflector's own name are refused here, before any lookup or dial. A
// missing port is returned as 0.
func resolveHost(hostport, domain string) (target, error) {
	host, portStr := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, portStr = h, p
	} else if strings.Contains(hostport, ":") && !strings.HasPrefix(hostport, "[") {
		return target{}, fmt.Errorf("%w %q", ErrBadTarget, hostport)
	}
	var port uint16
	if portStr != "" {
		n, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || n == 0 {
			return target{}, fmt.Errorf("%w: port %q", ErrBadTarget, portStr)
		}
		port = uint16(n)
	}
	host = hostName(host)
	id, ok := strings.CutSuffix(host, "."+domain)
	if !ok {
		id = host // a bare id has no dot, which ValidDeviceID checks
	}
	if host == domain || !tunnel.ValidDeviceID(id) || net.ParseIP(host) != nil {
		return target{}, fmt.Errorf("%w: %s", ErrNotDevice, host)
	}
	return target{device: id, port: port}, nil
}

// hostName is a host as names compare: lower case, without the root's dot.
// Only ASCII is lowered: Unicode case folding would make other names
// aliases of a device ("\u212a" is Kelvin, lowered to "k"); a non-ASCII
// name stays as it is and is no device.
func hostName(host string) string {
	host = strings.TrimSuffix(host, ".")
	b := []byte(host)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// equalFoldASCII reports whether a and b are equal with ASCII letters
// compared in any case. Header tokens, schemes and host names are ASCII
// (RFC 9110 §5.6.2); strings.EqualFold folds Unicode too, so "ſ" (long s)
// would pass for "s" and the Kelvin sign for "k", and a header a device
// sees as invalid would count as valid here.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
