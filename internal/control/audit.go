package control

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// defaultAuditLimit bounds what "reflector audit" prints unless --limit
// says otherwise: 90 days of streams could be more than a terminal, or the
// control socket's answer, should carry.
const defaultAuditLimit = 1000

// auditList: audit [--since 1h|7d|RFC3339] [--user U] [--device D] [--kind K] [--limit N] [--json]
func auditList(c *call, args []string) int {
	fs := c.flags()
	var since sinceFlag
	fs.Var(&since, "since", "only events since this long ago (30m, 1h, 7d) or since this RFC 3339 time")
	user := fs.String("user", "", "only events of this user")
	device := fs.String("device", "", "only events of this device")
	kind := fs.String("kind", "", "only events of this kind (login, stream, device.rotate, …) or family (device, token, …)")
	limit := fs.Int("limit", defaultAuditLimit, "only the newest N events; 0 for all")
	asJSON := fs.Bool("json", false, "print one JSON object per line instead of a table")
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	if *limit < 0 {
		return c.usageError(fs, "--limit %d: want 0 (all) or more", *limit)
	}
	if _, ok := ops.AuditKindFilter(*kind); !ok {
		return c.usageError(fs, "unknown kind %q; kinds are %s, or a family such as device", *kind, strings.Join(ops.AuditKinds, ", "))
	}

	f := store.AuditFilter{Since: since.time(time.Now()), User: *user, Device: *device, Kind: *kind}
	if *limit > 0 {
		f.Limit = *limit + 1 // one more, to tell whether any were left out
	}
	events, err := c.svc.AuditEvents(c.ctx, c.as, f)
	if err != nil {
		return c.fail("", err)
	}
	more := *limit > 0 && len(events) > *limit
	if more {
		events = events[len(events)-*limit:] // oldest first: keep the newest
	}

	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		for i := range events {
			if err := enc.Encode(&events[i]); err != nil {
				return c.fail("write audit log", err)
			}
		}
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tKIND\tOK\tUSER\tDEVICE\tPORT\tCLIENT\tDETAIL")
		for _, e := range events {
			ok, port := "yes", "-"
			if !e.OK {
				ok = "NO"
			}
			if e.Port != 0 {
				port = strconv.Itoa(int(e.Port))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"),
				cell(e.Kind), ok, orDash(cell(e.User)), orDash(cell(e.Device)), port, orDash(cell(e.Client)),
				orDash(cell(auditDetail(e))))
		}
		if err := tw.Flush(); err != nil {
			return c.fail("write audit log", err)
		}
	}
	if more {
		fmt.Fprintf(c.stderr, "reflector: note: only the newest %d events are shown; narrow with --since or use --limit 0 for all\n", *limit)
	}
	return exitOK
}

// auditDetail puts the fields without a column of their own in one cell:
// "by local; token 0123…; group ops; 1.2 MB up, 3.4 kB down in 12s; reason".
func auditDetail(e store.AuditEvent) string {
	var parts []string
	if e.Actor != "" {
		parts = append(parts, "by "+e.Actor)
	}
	if e.Token != "" {
		parts = append(parts, "token "+e.Token)
	}
	if e.Group != "" {
		parts = append(parts, "group "+e.Group)
	}
	if e.BytesUp != 0 || e.BytesDown != 0 || e.Duration != 0 {
		s := byteSize(e.BytesUp) + " up, " + byteSize(e.BytesDown) + " down"
		if e.Duration != 0 {
			s += " in " + roundDuration(e.Duration).String()
		}
		parts = append(parts, s)
	}
	if e.Reason != "" {
		parts = append(parts, e.Reason)
	}
	return strings.Join(parts, "; ")
}

// byteSize formats n in SI units: "512 B", "1.2 kB", "3.4 MB".
func byteSize(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), -1
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + string("kMGTPE"[i]) + "B"
}

// roundDuration keeps a duration readable: milliseconds below a second,
// seconds below an hour, minutes above.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Hour:
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}
