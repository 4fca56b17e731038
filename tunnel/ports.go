package tunnel

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ParsePorts parses a list of ports wherever one is written: the agent's
// X-Reflector-Ports header ("80,22"), a WebTunnelAgent's targetPorts
// ("80, 22" or "80 22"), webtunnel.ports in its properties file ("80;22"),
// and the --ports flags. Ports are separated by commas, semicolons or
// blanks; empty entries are skipped, duplicates dropped, the order kept.
func ParsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for f := range strings.FieldsFuncSeq(s, isPortSeparator) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q is not a number from 1 to 65535", f)
		}
		if p := uint16(n); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func isPortSeparator(r rune) bool {
	return r == ',' || r == ';' || r == ' ' || r == '\t'
}

// FormatPorts writes ports as ParsePorts reads them: "80,22".
func FormatPorts(ports []uint16) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}
