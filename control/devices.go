package control

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// defaultAgentPort is the agent allow-list suggested when device add names
// no ports: a device's web UI is the commonest thing to reach.
const defaultAgentPort = 80

// deviceAdd: device add ID [--group G]... [--ports 80,22] [--name TEXT] [--http-port N]
func deviceAdd(c *call, args []string) int {
	fs := c.flags()
	var groups listFlag
	fs.Var(&groups, "group", "a group of the device; repeat or separate with commas")
	var ports portsFlag
	fs.Var(&ports, "ports", "device ports users may reach, e.g. 80,22 (default: whatever the agent allows)")
	name := fs.String("name", "", "display name, e.g. \"Pump 17\"")
	var httpPort portFlag
	fs.Var(&httpPort, "http-port", "the device's web port for browsing (default: the agent's httpPort property)")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]

	secret, err := c.env.Store.AddDevice(store.Device{
		ID:       id,
		Name:     *name,
		Groups:   groups,
		Ports:    ports,
		HTTPPort: uint16(httpPort),
	})
	if err != nil {
		return c.fail("", err)
	}

	agentPorts := []uint16(ports)
	switch {
	case len(agentPorts) > 0:
	case httpPort != 0:
		agentPorts = []uint16{uint16(httpPort)}
	default:
		agentPorts = []uint16{defaultAgentPort}
	}
	url := c.env.ReflectorURL
	if url == "" {
		url = "https://REFLECTOR-HOST:8443"
	}
	line := fmt.Sprintf("REFLECTOR_DEVICE_SECRET=%s reflector-agent --reflector %s --device %s --ports %s",
		shellQuoteAlways(secret), shellQuote(url), shellQuote(id), formatPorts(agentPorts))
	if c.env.Fingerprint != "" {
		line += " --fingerprint " + shellQuote(c.env.Fingerprint)
	}

	w := c.stdout
	fmt.Fprintf(w, "device %s added; its secret (shown once): %s\n", id, secret)
	fmt.Fprintln(w, "run the agent on the device with:")
	fmt.Fprintf(w, "  %s\n", line)
	fmt.Fprintln(w, "The agent's --ports is its own allow-list of device-local ports; list every port users should reach.")
	if httpPort != 0 && len(ports) > 0 && !slices.Contains(ports, uint16(httpPort)) {
		// The proxy enforces the record's ports, so browsing would be
		// refused with 403 — almost certainly not what was meant.
		fmt.Fprintf(c.stderr, "reflector: note: --http-port %d is not among --ports %s, so browsing %s will be refused\n",
			httpPort, formatPorts(ports), id)
	}
	return exitOK
}

// deviceList: device list
func deviceList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	devices, err := c.env.Store.Devices()
	if err != nil {
		return c.fail("", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tGROUPS\tPORTS\tSTATUS")
	for _, d := range devices {
		ports := "agent's"
		if len(d.Ports) > 0 {
			ports = formatPorts(d.Ports)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(cell(d.Name)),
			orDash(strings.Join(d.Groups, ",")), ports, c.status(d, now))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list devices", err)
	}
	return exitOK
}

// status describes whether d is connected: "online since 15:04:05 from
// 192.0.2.7:50123, agent ports 22,80", "offline, last seen 2006-01-02
// 15:04" or "offline".
func (c *call) status(d store.Device, now time.Time) string {
	if c.env.Hub != nil {
		if st, ok := c.env.Hub.Status(d.ID); ok {
			s := fmt.Sprintf("online since %s from %s", clock(st.ConnectedSince, now), orDash(st.RemoteAddr))
			if len(st.Ports) > 0 {
				s += ", agent ports " + formatPorts(st.Ports)
			}
			return s
		}
	}
	if d.LastSeen.IsZero() {
		return "offline"
	}
	return "offline, last seen " + d.LastSeen.Local().Format("2006-01-02 15:04")
}

// clock formats t as 15:04:05 if it is today, with the date otherwise.
func clock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// deviceRemove: device rm ID
func deviceRemove(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	if err := c.env.Store.RemoveDevice(id); err != nil {
		return c.fail("", err)
	}
	// The secret no longer works, but a tunnel authenticated before the
	// removal would live on until it drops; close it now.
	online := false
	if c.env.Hub != nil {
		_, online = c.env.Hub.Status(id)
		c.env.Hub.Disconnect(id)
	}
	if online {
		fmt.Fprintf(c.stdout, "device %s removed; its tunnel was closed\n", id)
	} else {
		fmt.Fprintf(c.stdout, "device %s removed\n", id)
	}
	return exitOK
}

// cell makes free text safe for one tabwriter cell: a tab would start a new
// column. (The store already refuses control characters in device names;
// this keeps the table straight if that ever changes.)
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// shellQuote returns s as one POSIX shell word, quoting only when needed.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-") == "" {
		return s
	}
	return shellQuoteAlways(s)
}

// shellQuoteAlways returns s in single quotes, each ' written as '\”.
func shellQuoteAlways(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
