package ops

import (
	"fmt"

	"github.com/reflector-dev/reflector/tunnel"
)

// Descriptions of records for the audit log and messages.

// describePorts is "ports 22,80" or "the agent's ports".
func describePorts(ports []uint16) string {
	if len(ports) == 0 {
		return "the agent's ports"
	}
	return "ports " + tunnel.FormatPorts(ports)
}

// describeHTTPTLS says how the reflector speaks to the device's web port
// with the record's HTTPTLS and HTTPPort (see store.Device.HTTPTLS).
func describeHTTPTLS(on bool, httpPort uint16) string {
	switch {
	case on:
		return "HTTPS to the web port"
	case httpPort != 0:
		return "plain HTTP to the web port"
	}
	return "HTTPS as the agent declares"
}

// addrOrDash is an address for a message, "-" when unknown.
func addrOrDash[A interface {
	IsValid() bool
	String() string
}](a A) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// ByteCount formats n bytes in binary units for messages and pages: 512 B,
// 1.5 KiB, 3.2 GiB.
func ByteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
