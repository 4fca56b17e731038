package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// auditPage is the number of events an audit page shows.
const auditPage = 50

// auditTimeLayout is what an <input type=datetime-local> sends; the page
// reads and shows times in UTC, as its labels say.
const auditTimeLayout = "2006-01-02T15:04"

// auditRanges are the presets of the time filter: the last hour, day,
// week.
var auditRanges = []struct{ Value, Key string }{
	{"1h", "audit.last1h"}, {"24h", "audit.last24h"}, {"7d", "audit.last7d"},
}

func auditRange(v string) (time.Duration, bool) {
	switch v {
	case "1h":
		return time.Hour, true
	case "24h":
		return 24 * time.Hour, true
	case "7d":
		return 7 * 24 * time.Hour, true
	}
	return 0, false
}

func (w *Web) auditRoutes() map[string]handler {
	return map[string]handler{"GET /audit": w.audit}
}

// auditData is the audit view.
type auditData struct {
	// The filter as entered, for the form and the links.
	Range, Since, Until, User, Device, Kind string
	Ranges                                  []struct{ Value, Key string }
	Families, Kinds                         []string // the kind select's options
	Errors                                  map[string]string
	Events                                  []auditRow
	Newest, Older                           string // links that keep the filters
}

// auditRow is an event's line.
type auditRow struct {
	Seq                   uint64
	Time                  string
	Kind                  string
	OK                    bool
	Actor, User, Device   string
	Port                  string
	Client, Reason, Token string
	Group                 string
	Stream                bool // a stream: bytes and duration follow
	Up, Down, Duration    string
}

func newAuditRow(e store.AuditEvent) auditRow {
	r := auditRow{Seq: e.Seq, Time: e.Time.UTC().Format("2006-01-02 15:04:05"), Kind: e.Kind, OK: e.OK,
		Actor: e.Actor, User: e.User, Device: e.Device, Client: e.Client, Reason: e.Reason, Token: e.Token, Group: e.Group}
	if e.Port != 0 {
		r.Port = strconv.Itoa(int(e.Port))
	}
	if e.Kind == store.AuditStream || e.Kind == store.AuditRequest || e.BytesUp != 0 || e.BytesDown != 0 || e.Duration != 0 {
		r.Stream = true
		r.Up, r.Down, r.Duration = ops.ByteCount(e.BytesUp), ops.ByteCount(e.BytesDown), duration(e.Duration)
	}
	return r
}

// duration rounds d for reading: 850 ms, 12.3 s, 4m10s, 2h3m.
func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// auditFamilies are the families of kinds with more than their own kind:
// "device." for device.add, device.rm and the others.
func auditFamilies() []string {
	var out []string
	for _, k := range ops.AuditKinds {
		fam, _, ok := strings.Cut(k, ".")
		if ok && !slices.Contains(out, fam+".") {
			out = append(out, fam+".")
		}
	}
	return out
}

// auditFilter reads the page's query into the store's filter; a bad value
// is an error by its field.
func auditFilter(q url.Values, now time.Time, d *auditData) (store.AuditFilter, bool) {
	f := store.AuditFilter{User: d.User, Device: d.Device, Kind: d.Kind, Limit: auditPage + 1}
	if d.Range != "" {
		if span, ok := auditRange(d.Range); ok {
			f.Since = now.Add(-span)
		} else {
			d.Errors["range"] = "unknown range"
		}
	}
	for _, t := range []struct {
		field, value string
		to           *time.Time
	}{{"since", d.Since, &f.Since}, {"until", d.Until, &f.Until}} {
		if t.value == "" {
			continue
		}
		v, err := time.ParseInLocation(auditTimeLayout, t.value, time.UTC)
		if err != nil {
			if v, err = time.Parse(time.RFC3339, t.value); err != nil {
				d.Errors[t.field] = "want a date and time such as 2026-12-31T23:59"
				continue
			}
		}
		if t.field == "since" && !f.Since.IsZero() && f.Since.After(v) {
			continue // the range is the narrower
		}
		*t.to = v
	}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n == 0 {
			d.Errors["before"] = "not a position this page gave"
		}
		f.Before = n
	}
	return f, len(d.Errors) == 0
}

// audit is the audit log, newest first, filtered and paged: all events to
// an admin, a user's own to a user (ops.AuditEvents decides).
func (w *Web) audit(rw http.ResponseWriter, r *http.Request, v *visit) error {
	q := r.URL.Query()
	d := auditData{Range: q.Get("range"), Since: q.Get("since"), Until: q.Get("until"),
		User: strings.TrimSpace(q.Get("user")), Device: strings.TrimSpace(q.Get("device")), Kind: q.Get("kind"),
		Ranges: auditRanges, Families: auditFamilies(), Kinds: ops.AuditKinds, Errors: map[string]string{}}
	if !v.caller.Admin() {
		d.User = "" // a user sees their own; the form has no user field
	}
	pv := view{Title: w.brand.Text("audit.title"), Nav: "audit"}
	f, ok := auditFilter(q, time.Now(), &d)
	status := http.StatusOK
	if ok {
		events, err := w.ops.AuditEvents(r.Context(), v.caller, f)
		if field, msg, isField := fieldError(err); isField {
			d.Errors[field], ok = msg, false
		} else if err != nil && !errors.Is(err, store.ErrInvalid) {
			return err
		} else if err != nil {
			pv.Error, ok = err.Error(), false
		}
		slices.Reverse(events) // the operation answers oldest first
		if len(events) > auditPage {
			events = events[:auditPage]
			d.Older = d.link(events[auditPage-1].Seq)
		}
		for _, e := range events {
			d.Events = append(d.Events, newAuditRow(e))
		}
	}
	if !ok {
		status = http.StatusBadRequest
	}
	if f.Before != 0 {
		d.Newest = d.link(0)
	}
	pv.Data = d
	w.render(rw, status, "audit", v, pv)
	return nil
}

// link is the audit page with d's filters, below before (0: the newest).
func (d *auditData) link(before uint64) string {
	p := url.Values{}
	for k, val := range map[string]string{"range": d.Range, "since": d.Since, "until": d.Until,
		"user": d.User, "device": d.Device, "kind": d.Kind} {
		if val != "" {
			p.Set(k, val)
		}
	}
	if before != 0 {
		p.Set("before", strconv.FormatUint(before, 10))
	}
	if len(p) == 0 {
		return "/audit"
	}
	return "/audit?" + p.Encode()
}
