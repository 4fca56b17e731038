package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/internal/ops"
)

// dashboardPage is the number of devices a dashboard page shows.
const dashboardPage = 50

// deviceRow is a device's line on the dashboard, and its entry in
// status.json, with which the page's script keeps the line live.
type deviceRow struct {
	ID      string   `json:"id"`
	Name    string   `json:"-"`
	Groups  []string `json:"-"`
	Online  bool     `json:"online"`
	Agent   string   `json:"agent"`   // kind and version while online
	Since   string   `json:"since"`   // connected since, or last seen
	Streams string   `json:"streams"` // open streams while online
	WebURL  string   `json:"-"`       // the device's subdomain: its web UI
}

func newDeviceRow(d ops.Device) deviceRow {
	row := deviceRow{ID: d.ID, Name: d.Name, Groups: d.Groups, Online: d.Online}
	if d.Online {
		row.Agent = d.Tunnel.Kind
		if d.Tunnel.AgentVersion != "" {
			row.Agent += " " + d.Tunnel.AgentVersion
		}
		row.Since = "online since " + d.Tunnel.ConnectedSince.UTC().Format("2006-01-02 15:04 UTC")
		row.Streams = strconv.FormatInt(d.Tunnel.OpenStreams, 10)
		return row
	}
	switch {
	case d.Disabled:
		row.Since = "disabled"
	case d.LastSeen.IsZero():
		row.Since = "never seen"
	default:
		row.Since = "last seen " + ago(d.LastSeen)
	}
	return row
}

// dashboardData is the dashboard's view.
type dashboardData struct {
	Q, Group, Online string
	Groups           []string // the groups to filter by
	Devices          []deviceRow
	First, Next      string // links to the first and the next page
}

// dashboard lists the devices the visitor may reach, a page at a time,
// searched and filtered on the server: it stays usable at 10,000 devices.
func (w *Web) dashboard(rw http.ResponseWriter, r *http.Request, v *visit) error {
	q := r.URL.Query()
	d := dashboardData{Q: q.Get("q"), Group: q.Get("group"), Online: q.Get("online")}
	query := ops.DeviceQuery{Q: d.Q, Group: d.Group, After: q.Get("after"), Limit: dashboardPage}
	switch d.Online {
	case "true", "false":
		on := d.Online == "true"
		query.Online = &on
	default:
		d.Online = ""
	}
	page, err := w.ops.Devices(r.Context(), v.caller, query)
	if err != nil {
		return err
	}
	for _, dev := range page.Devices {
		row := newDeviceRow(dev)
		row.WebURL = w.cfg.DeviceURL(dev.ID)
		d.Devices = append(d.Devices, row)
	}
	if d.Groups, err = w.ops.GroupNames(r.Context(), v.caller); err != nil {
		return err
	}
	link := func(after string) string {
		p := url.Values{}
		for k, val := range map[string]string{"q": d.Q, "group": d.Group, "online": d.Online, "after": after} {
			if val != "" {
				p.Set(k, val)
			}
		}
		if len(p) == 0 {
			return "/"
		}
		return "/?" + p.Encode()
	}
	if query.After != "" {
		d.First = link("")
	}
	if page.Next != "" {
		d.Next = link(page.Next)
	}
	w.render(rw, http.StatusOK, "dashboard", v, view{Title: w.brand.Text("dashboard.title"), Nav: "devices", Data: d})
	return nil
}

// maxStatusIDs bounds the devices one status.json request asks about: a
// dashboard page's.
const maxStatusIDs = 200

// statusJSON answers the current status of the devices ids names (the
// visible rows of a dashboard or device page), for the page's script; the
// devices the visitor may not reach are left out.
func (w *Web) statusJSON(rw http.ResponseWriter, r *http.Request, v *visit) error {
	ids := strings.Split(r.URL.Query().Get("ids"), ",")
	if len(ids) > maxStatusIDs {
		ids = ids[:maxStatusIDs]
	}
	rows := make([]deviceRow, 0, len(ids))
	for _, id := range ids {
		if id == "" {
			continue
		}
		d, err := w.ops.Device(r.Context(), v.caller, id)
		if err != nil {
			continue // gone, or not the visitor's
		}
		rows = append(rows, newDeviceRow(d))
	}
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	return json.NewEncoder(rw).Encode(rows)
}
