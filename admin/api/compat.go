package api

// macchina.io REMOTE's two API paths, so that the scripts and provisioning
// tools of existing fleets keep working against the reflector:
//
//   - /my-devices/api/provision?device=ID hands out a WebTunnelAgent.properties
//     for a device (as the SDK's wiki documents the path: "Using the
//     macchina.io Remote Manager Provisioning API Endpoint"), or our agent's
//     command line. The reflector keeps only a hash of a device's secret, so
//     a file with a password in it can only be made with a new secret: every
//     answer rotates it, and says so.
//   - /my-devices/api/devices is the device listing integrators call with a
//     bearer token (GET …/devices?status=all in macchina.io's own example).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
)

// SecretRotatedHeader is "true" on every provisioning answer: it holds a
// new secret, the old one no longer works, and an agent connected with the
// old one was dropped.
const SecretRotatedHeader = "X-Reflector-Secret-Rotated"

// Provisioning formats (format=…).
const (
	formatWebTunnel      = "webtunnel"       // WebTunnelAgent.properties (the default)
	formatReflectorAgent = "reflector-agent" // our agent's command line
)

func (a *API) compatRoutes() []route {
	return []route{
		{method: http.MethodGet, path: CompatDevicesPath, serve: a.compatDevices},
		// macchina.io accepts both methods. A GET that changes something
		// is what its tools send; see navigationAllowed for what that costs.
		{method: http.MethodGet, path: CompatProvisionPath, serve: a.provision},
		{method: http.MethodPost, path: CompatProvisionPath, serve: a.provision},
	}
}

// errCrossSiteProvision refuses a GET provisioning with the session cookie
// that the admin did not make from the admin host or by typing the URL.
var errCrossSiteProvision = &apiError{http.StatusForbidden, codeForbidden, "",
	"provisioning rotates the device's secret: with the session cookie, GET it from the admin host's pages or a typed URL, " +
		"or POST it with the " + CSRFHeader + " header, or use an API token"}

// navigationAllowed refuses a GET that rotates a secret on the strength of
// the session cookie unless the browser says the admin made it: the cookie
// is SameSite=Lax, which browsers send on top-level cross-site GET
// navigations, so any page (another site's, or a device's, which is the
// same site) could otherwise make the admin's browser rotate a device's
// secret with a link. Sec-Fetch-Site (Fetch Metadata, sent by every current
// browser on every request) is "same-origin" for the admin host's own
// pages and "none" for a typed or bookmarked URL; a request without it is
// refused, as from a browser too old to tell. POST falls under the
// session's CSRF token and Origin check instead (authenticate), and a
// bearer token is no ambient credential at all.
func navigationAllowed(r *http.Request) error {
	if authenticatedOf(r).how != authSession || !safeMethod(r.Method) {
		return nil
	}
	if site := r.Header.Values("Sec-Fetch-Site"); len(site) == 1 && (site[0] == "same-origin" || site[0] == "none") {
		return nil
	}
	return errCrossSiteProvision
}

// provisionRequest is what a provisioning request asks for.
type provisionRequest struct {
	device   string
	httpPort uint16 // 0: the record's
	format   string
}

// provisionParams reads device, httpPort and format from the query or, for
// a POST, a form body (as macchina.io's endpoint takes them). Everything is
// checked before the secret is touched.
func provisionParams(w http.ResponseWriter, r *http.Request) (provisionRequest, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return provisionRequest{}, badRequest("reading the parameters: " + err.Error())
	}
	p := provisionRequest{device: r.Form.Get("device"), format: r.Form.Get("format")}
	if p.device == "" {
		return p, invalid("device", "device is required: the id of the device to provision")
	}
	if s := r.Form.Get("httpPort"); s != "" {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return p, invalid("httpPort", fmt.Sprintf("httpPort %q: want a port number, 1-65535", s))
		}
		p.httpPort = uint16(n)
	}
	switch p.format {
	case "":
		p.format = formatWebTunnel
	case formatWebTunnel, formatReflectorAgent:
	default:
		return p, invalid("format", fmt.Sprintf("format %q: want %s or %s", p.format, formatWebTunnel, formatReflectorAgent))
	}
	return p, nil
}

// provision rotates the device's secret and answers with what its agent
// needs to connect with the new one: a WebTunnelAgent.properties to save,
// or our agent's command line.
func (a *API) provision(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if err := navigationAllowed(r); err != nil {
		return err
	}
	req, err := provisionParams(w, r)
	if err != nil {
		return err
	}
	p, err := a.ops.RotateDeviceSecret(ctx(r), c, req.device)
	if err != nil {
		return err
	}
	d := p.Device.Device
	if req.httpPort != 0 {
		// The file's httpPort, and, for a record without ports, the port
		// forwarded; the record itself is left as it is.
		d.HTTPPort = req.httpPort
	}
	note := "# The device's secret was rotated to make this: the previous one no longer works"
	if p.WasOnline {
		note += ", and the agent connected with it was dropped"
	}
	note += ".\n"
	h := w.Header()
	h.Set(SecretRotatedHeader, "true")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	var body string
	switch req.format {
	case formatReflectorAgent:
		body = note + a.ops.AgentLine(d.ID, ops.ShellQuoteAlways(p.Secret), d.Ports, d.HTTPPort) + "\n"
	default:
		h.Set("Content-Disposition", `attachment; filename="WebTunnelAgent.properties"`)
		body = note + a.ops.WebTunnelProperties(d, p.Secret)
	}
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, body) // a write error means the client is gone
	return nil
}

// compatDeviceJSON is a device as /my-devices/api/devices shows it.
// macchina.io does not publish the schema of its listing: id, name, domain
// and status ("online" or "offline", the values of its status parameter)
// follow what is known of it, and httpPort is its agent's property name.
// The other fields are the reflector's own, named as in /api/v1.
type compatDeviceJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Domain   string `json:"domain"` // the WebTunnelAgents' @domain
	Status   string `json:"status"`
	HTTPPort uint16 `json:"httpPort,omitempty"` // the record's, else the agent's; absent when neither says
	// The reflector's own:
	Groups    []string   `json:"groups"`
	Ports     []uint16   `json:"ports"`
	Disabled  bool       `json:"disabled"`
	AgentKind string     `json:"agentKind,omitempty"` // online: "reflector.v1" or "webtunnel"
	LastSeen  *time.Time `json:"lastSeen,omitempty"`  // offline and seen before
}

func newCompatDeviceJSON(d ops.Device, domain string) compatDeviceJSON {
	v := compatDeviceJSON{
		ID: d.ID, Name: d.Name, Domain: domain, Status: "offline", HTTPPort: d.HTTPPort,
		Groups: nonNil(d.Groups), Ports: nonNil(d.Ports), Disabled: d.Disabled,
	}
	switch {
	case d.Online:
		v.Status, v.AgentKind = "online", d.Tunnel.Kind
		if n, err := strconv.ParseUint(d.Tunnel.Properties["httpPort"], 10, 16); v.HTTPPort == 0 && err == nil {
			v.HTTPPort = uint16(n)
		}
	case !d.LastSeen.IsZero():
		t := d.LastSeen.UTC()
		v.LastSeen = &t
	}
	return v
}

// compatDevices answers every device the caller may reach, optionally only
// those online or offline (status=all|online|offline), as one JSON array.
// It reads the store a page at a time and writes each page out before
// reading the next, so a fleet of ten thousand costs one page of memory.
func (a *API) compatDevices(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	q := ops.DeviceQuery{Limit: ops.MaxPage}
	switch s := r.URL.Query().Get("status"); s {
	case "", "all":
	case "online", "offline":
		online := s == "online"
		q.Online = &online
	default:
		return invalid("status", fmt.Sprintf("status %q: want all, online or offline", s))
	}
	// The first page is read before the answer starts, so that its errors
	// are still answers of their own.
	page, err := a.ops.Devices(ctx(r), c, q)
	if err != nil {
		return err
	}
	domain := a.ops.WebTunnelDomain()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	rc := http.NewResponseController(w)
	sep := "["
	for {
		for _, d := range page.Devices {
			io.WriteString(w, sep)
			sep = ","
			if err := enc.Encode(newCompatDeviceJSON(d, domain)); err != nil {
				return nil // the client is gone
			}
		}
		if page.Next == "" {
			break
		}
		rc.Flush()
		if err := r.Context().Err(); err != nil {
			return nil // the client is gone
		}
		q.After = page.Next
		if page, err = a.ops.Devices(ctx(r), c, q); err != nil {
			// Too late for an error answer: the array stays open, so the
			// client cannot take what it got for the whole list.
			a.log.Error("api request failed mid-answer", "method", r.Method, "path", r.URL.Path, "err", err)
			return nil
		}
	}
	if sep == "[" {
		io.WriteString(w, "[")
	}
	io.WriteString(w, "]\n")
	return nil
}
