package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdDevices prints the devices the user may reach: a table, or the API's
// JSON objects as one array.
func cmdDevices(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("devices")
	online := fs.Bool("online", false, "only the devices online")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if rest, err := e.parseInterspersed(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("want remote devices [--online] [--json]")
	}
	c, err := e.connected()
	if err != nil {
		return err
	}
	devices, err := c.Devices(ctx, *online)
	if err != nil {
		return err
	}
	if *asJSON {
		raws := make([]json.RawMessage, len(devices))
		for i, d := range devices {
			raws[i] = d.Raw
		}
		out, err := json.MarshalIndent(raws, "", "  ")
		if err != nil {
			return fmt.Errorf("encode devices: %w", err)
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", out)
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tPORTS\tLAST SEEN\tNAME")
	now := time.Now()
	for _, d := range devices {
		status, seen := "offline", "never"
		if d.Status.Online {
			status, seen = "online", "now"
		} else if d.Status.LastSeen != nil {
			seen = ago(now.Sub(*d.Status.LastSeen))
		}
		ports := d.Ports
		if len(d.Status.AgentPorts) > 0 {
			ports = d.Status.AgentPorts
		}
		ports = slices.Clone(ports)
		slices.Sort(ports)
		ps := make([]string, len(ports))
		for i, p := range ports {
			ps[i] = strconv.Itoa(p)
		}
		portList := strings.Join(ps, ",")
		if portList == "" {
			portList = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, status, portList, seen, d.Name)
	}
	return tw.Flush()
}

// ago is a duration in the largest whole unit: "5m ago".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
