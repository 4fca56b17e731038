package control

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/tunnel"
)

// deviceView is `device show --json`: the record and, while the device is
// connected, what its tunnel reports (either agent kind).
type deviceView struct {
	ID       string      `json:"id"`
	Name     string      `json:"name,omitempty"`
	Groups   []string    `json:"groups"`
	Ports    []uint16    `json:"ports,omitempty"` // the record's allow-list; empty: the agent's
	HTTPPort uint16      `json:"http_port,omitempty"`
	HTTPTLS  bool        `json:"http_tls,omitempty"`
	Disabled bool        `json:"disabled,omitempty"`
	Created  time.Time   `json:"created"`
	LastSeen time.Time   `json:"last_seen,omitzero"`
	Online   bool        `json:"online"`
	Tunnel   *tunnelView `json:"tunnel,omitempty"`
}

type tunnelView struct {
	Kind         string            `json:"kind"`
	Since        time.Time         `json:"connected_since"`
	RemoteAddr   string            `json:"remote_addr"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Ports        []uint16          `json:"ports"`
	Properties   map[string]string `json:"properties"`
	OpenStreams  int64             `json:"open_streams"`
	BytesIn      int64             `json:"bytes_from_device"`
	BytesOut     int64             `json:"bytes_to_device"`
}

func newDeviceView(d ops.Device) deviceView {
	v := deviceView{
		ID: d.ID, Name: d.Name, Groups: d.Groups, Ports: d.Ports, HTTPPort: d.HTTPPort,
		HTTPTLS: d.HTTPTLS, Disabled: d.Disabled, Created: d.Created, LastSeen: d.LastSeen,
		Online: d.Online,
	}
	if v.Groups == nil {
		v.Groups = []string{}
	}
	if st := d.Tunnel; d.Online {
		v.Tunnel = &tunnelView{
			Kind: st.Kind, Since: st.ConnectedSince, RemoteAddr: st.RemoteAddr,
			AgentVersion: st.AgentVersion, Ports: st.Ports, Properties: st.Properties,
			OpenStreams: st.OpenStreams, BytesIn: st.BytesIn, BytesOut: st.BytesOut,
		}
	}
	return v
}

// deviceShow: device show ID [--json]
func deviceShow(c *call, args []string) int {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print one JSON object")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	d, err := c.svc.Device(c.ctx, c.as, pos[0])
	if err != nil {
		return c.fail("", err)
	}
	v := newDeviceView(d)
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return c.fail("show device", err)
		}
		return exitOK
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("device", d.ID)
	row("name", orDash(cell(d.Name)))
	row("groups", orDash(strings.Join(d.Groups, ",")))
	if len(d.Ports) > 0 {
		row("ports", tunnel.FormatPorts(d.Ports))
	} else {
		row("ports", "the agent's")
	}
	if d.HTTPPort != 0 {
		row("http port", fmt.Sprint(d.HTTPPort))
	}
	row("status", status(d, now))
	if t := v.Tunnel; t != nil {
		row("kind", t.Kind)
		row("agent", orDash(cell(t.AgentVersion)))
		for _, k := range slices.Sorted(maps.Keys(t.Properties)) {
			row("property "+cell(k), cell(t.Properties[k]))
		}
		row("streams", fmt.Sprintf("%d open; %s from the device, %s to it since it connected",
			t.OpenStreams, ops.ByteCount(t.BytesIn), ops.ByteCount(t.BytesOut)))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("show device", err)
	}
	return exitOK
}
