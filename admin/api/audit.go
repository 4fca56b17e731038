package api

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// eventJSON is an audit event as the API shows it; empty fields are left
// out.
type eventJSON struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	OK         bool      `json:"ok"`
	Actor      string    `json:"actor,omitempty"` // who made an admin change
	User       string    `json:"user,omitempty"`
	Device     string    `json:"device,omitempty"`
	Port       uint16    `json:"port,omitempty"`
	Client     string    `json:"client,omitempty"` // the address of the user or actor
	TokenID    string    `json:"tokenId,omitempty"`
	Group      string    `json:"group,omitempty"`
	Reason     string    `json:"reason,omitempty"` // why it failed, or what changed
	BytesUp    int64     `json:"bytesUp,omitempty"`
	BytesDown  int64     `json:"bytesDown,omitempty"`
	DurationMs int64     `json:"durationMs,omitempty"`
}

func newEventJSON(e store.AuditEvent) eventJSON {
	return eventJSON{Seq: e.Seq, Time: e.Time.UTC(), Kind: e.Kind, OK: e.OK, Actor: e.Actor, User: e.User,
		Device: e.Device, Port: e.Port, Client: e.Client, TokenID: e.Token, Group: e.Group, Reason: e.Reason,
		BytesUp: e.BytesUp, BytesDown: e.BytesDown, DurationMs: e.Duration.Milliseconds()}
}

func (a *API) auditRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/audit", serve: a.listAudit},
	}
}

// auditCursor names audit cursors; the position is the smallest sequence
// number of the page before, so the next page starts below it and events
// written meanwhile (above it) neither shift nor repeat a page.
const auditCursor = "a1"

// auditQuery reads GET /audit's parameters: since, until, user, device,
// kind, limit, cursor.
func auditQuery(r *http.Request) (store.AuditFilter, error) {
	q := r.URL.Query()
	f := store.AuditFilter{User: q.Get("user"), Device: q.Get("device"), Kind: q.Get("kind")}
	var err error
	if f.Since, err = queryTime(r, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
		return f, err
	}
	if f.Limit, err = queryLimit(r); err != nil {
		return f, err
	}
	pos, err := decodeCursor(r, auditCursor)
	if err != nil {
		return f, err
	}
	if pos != "" {
		if f.Before, err = strconv.ParseUint(pos, 10, 64); err != nil || f.Before == 0 {
			return f, invalid("cursor", "cursor is not one this listing gave")
		}
	}
	return f, nil
}

// listAudit answers a page of audit events, newest first: all to an
// admin, a user's own to a user.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	f, err := auditQuery(r)
	if err != nil {
		return err
	}
	limit := f.Limit
	f.Limit++ // one more tells whether another page follows
	events, err := a.ops.AuditEvents(ctx(r), c, f)
	if err != nil {
		return err
	}
	slices.Reverse(events) // the operation answers oldest first
	var out page[eventJSON]
	if len(events) > limit {
		events = events[:limit]
		out.NextCursor = encodeCursor(auditCursor, strconv.FormatUint(events[limit-1].Seq, 10))
	}
	out.Items = make([]eventJSON, len(events))
	for i, e := range events {
		out.Items[i] = newEventJSON(e)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
