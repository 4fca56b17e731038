package api

import (
	"net/http"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
)

// deviceJSON is a device as the API shows it: its record, and under status
// what the hub knows.
type deviceJSON struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Groups   []string     `json:"groups"`
	Ports    []uint16     `json:"ports"` // the record's allow-list; empty: whatever the agent allows
	HTTPPort uint16       `json:"httpPort"`
	HTTPTLS  bool         `json:"httpTLS"`
	Disabled bool         `json:"disabled"`
	Created  time.Time    `json:"created"`
	Status   deviceStatus `json:"status"`
}

// deviceStatus is what the hub knows of a device: while it is online, its
// tunnel; otherwise when it was last seen.
type deviceStatus struct {
	Online         bool              `json:"online"`
	LastSeen       *time.Time        `json:"lastSeen,omitempty"` // offline and seen before
	ConnectedSince *time.Time        `json:"connectedSince,omitempty"`
	AgentKind      string            `json:"agentKind,omitempty"` // "reflector.v1" or "webtunnel"
	AgentVersion   string            `json:"agentVersion,omitempty"`
	Address        string            `json:"address,omitempty"` // the agent's address as the reflector sees it
	AgentPorts     []uint16          `json:"agentPorts,omitempty"`
	Properties     map[string]string `json:"properties,omitempty"`
	OpenStreams    *int64            `json:"openStreams,omitempty"`
	BytesIn        *int64            `json:"bytesFromDevice,omitempty"`
	BytesOut       *int64            `json:"bytesToDevice,omitempty"`
}

func newDeviceJSON(d ops.Device) deviceJSON {
	v := deviceJSON{
		ID: d.ID, Name: d.Name, Groups: nonNil(d.Groups), Ports: nonNil(d.Ports), HTTPPort: d.HTTPPort,
		HTTPTLS: d.HTTPTLS, Disabled: d.Disabled, Created: d.Created.UTC(),
	}
	if !d.Online {
		if !d.LastSeen.IsZero() {
			t := d.LastSeen.UTC()
			v.Status.LastSeen = &t
		}
		return v
	}
	t := d.Tunnel
	since := t.ConnectedSince.UTC()
	v.Status = deviceStatus{
		Online: true, ConnectedSince: &since, AgentKind: t.Kind, AgentVersion: t.AgentVersion,
		Address: t.RemoteAddr, AgentPorts: t.Ports, Properties: t.Properties,
		OpenStreams: &t.OpenStreams, BytesIn: &t.BytesIn, BytesOut: &t.BytesOut,
	}
	return v
}

// nonNil is s, or an empty slice: JSON arrays are [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *API) deviceRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/devices", serve: a.listDevices},
		{method: http.MethodPost, path: Prefix + "/devices", serve: a.addDevice},
		{method: http.MethodGet, path: Prefix + "/devices/{id}", serve: a.getDevice},
		{method: http.MethodPatch, path: Prefix + "/devices/{id}", serve: a.patchDevice},
		{method: http.MethodDelete, path: Prefix + "/devices/{id}", serve: a.removeDevice},
		{method: http.MethodPost, path: Prefix + "/devices/{id}/rotate-secret", serve: a.rotateSecret},
		{method: http.MethodPost, path: Prefix + "/devices/{id}/disable", serve: a.disableDevice},
		{method: http.MethodPost, path: Prefix + "/devices/{id}/enable", serve: a.enableDevice},
		{method: http.MethodGet, path: Prefix + "/devices/{id}/streams", serve: a.listStreams},
		{method: http.MethodDelete, path: Prefix + "/devices/{id}/streams/{streamId}", serve: a.cutStream},
		{method: http.MethodDelete, path: Prefix + "/devices/{id}/ssh-host-key", serve: a.resetHostKey},
	}
}

// deviceCursor names device cursors.
const deviceCursor = "d1"

// deviceQuery reads GET /devices's parameters: q, group, online, limit,
// cursor.
func deviceQuery(r *http.Request) (ops.DeviceQuery, error) {
	q := ops.DeviceQuery{Q: r.URL.Query().Get("q"), Group: r.URL.Query().Get("group")}
	var err error
	if q.Online, err = queryBool(r, "online"); err != nil {
		return q, err
	}
	if q.Limit, err = queryLimit(r); err != nil {
		return q, err
	}
	if q.After, err = decodeCursor(r, deviceCursor); err != nil {
		return q, err
	}
	return q, nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	q, err := deviceQuery(r)
	if err != nil {
		return err
	}
	p, err := a.ops.Devices(ctx(r), c, q)
	if err != nil {
		return err
	}
	out := page[deviceJSON]{Items: make([]deviceJSON, len(p.Devices)), NextCursor: encodeCursor(deviceCursor, p.Next)}
	for i, d := range p.Devices {
		out.Items[i] = newDeviceJSON(d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	d, err := a.ops.Device(ctx(r), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newDeviceJSON(d))
	return nil
}

// newDeviceRequest is POST /devices's body.
type newDeviceRequest struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Groups   []string `json:"groups"`
	Ports    []uint16 `json:"ports"`
	HTTPPort uint16   `json:"httpPort"`
	HTTPTLS  bool     `json:"httpTLS"`
	// Secret adopts the device's own secret (a WebTunnelAgent's password)
	// instead of generating one.
	Secret string `json:"secret"`
}

// provisionedJSON is a device with a secret just set, and what its agent
// needs: shown once.
type provisionedJSON struct {
	Device deviceJSON `json:"device"`
	// Secret is absent when the device's own secret was adopted.
	Secret string `json:"secret,omitempty"`
	// AgentCommand runs our agent for the device (the secret in its
	// environment).
	AgentCommand string `json:"agentCommand"`
	// WebTunnelAgentProperties is a WebTunnelAgent.properties for
	// macchina.io's agent; absent when the secret was adopted (the device
	// has its file).
	WebTunnelAgentProperties string `json:"webTunnelAgentProperties,omitempty"`
	// Disconnected: the agent connected with the old secret was dropped.
	Disconnected bool `json:"disconnected,omitempty"`
}

// agentSecretPlaceholder stands for an adopted secret in the agent line,
// which must not show it.
const agentSecretPlaceholder = "'<the device's password>'"

func (a *API) provisioned(p ops.Provisioned) provisionedJSON {
	d := p.Device
	out := provisionedJSON{Device: newDeviceJSON(d), Secret: p.Secret, Disconnected: p.WasOnline}
	if p.Secret == "" {
		out.AgentCommand = a.ops.AgentLine(d.ID, agentSecretPlaceholder, d.Ports, d.HTTPPort)
		return out
	}
	out.AgentCommand = a.ops.AgentLine(d.ID, ops.ShellQuoteAlways(p.Secret), d.Ports, d.HTTPPort)
	out.WebTunnelAgentProperties = a.ops.WebTunnelProperties(d.Device, p.Secret)
	return out
}

func (a *API) addDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req newDeviceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return invalid("id", "id is required: the device's name, a DNS label such as pump-17")
	}
	p, err := a.ops.AddDevice(ctx(r), c, ops.NewDevice{
		ID: req.ID, Name: req.Name, Groups: req.Groups, Ports: req.Ports,
		HTTPPort: req.HTTPPort, HTTPTLS: req.HTTPTLS, Secret: req.Secret,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", Prefix+"/devices/"+p.Device.ID)
	writeJSON(w, http.StatusCreated, a.provisioned(p))
	return nil
}

// patchDeviceRequest is PATCH /devices/{id}'s body: fields present are
// set (groups and ports replace the lists; [] empties them), fields absent
// stay.
type patchDeviceRequest struct {
	Name     *string   `json:"name"`
	Groups   *[]string `json:"groups"`
	Ports    *[]uint16 `json:"ports"`
	HTTPPort *uint16   `json:"httpPort"`
	HTTPTLS  *bool     `json:"httpTLS"`
}

func (a *API) patchDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req patchDeviceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	u := store.DeviceUpdate{Name: req.Name, Groups: req.Groups, Ports: req.Ports, HTTPPort: req.HTTPPort, HTTPTLS: req.HTTPTLS}
	if u == (store.DeviceUpdate{}) {
		return badRequest("nothing to change: give name, groups, ports, httpPort or httpTLS")
	}
	d, _, err := a.ops.UpdateDevice(ctx(r), c, r.PathValue("id"), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newDeviceJSON(d))
	return nil
}

func (a *API) removeDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if _, err := a.ops.RemoveDevice(ctx(r), c, r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

// resetHostKey forgets the device's SSH host key (internal/webssh trusts
// the next one on first use): 204 whether or not one was kept.
func (a *API) resetHostKey(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if _, err := a.ops.ResetHostKey(ctx(r), c, r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	p, err := a.ops.RotateDeviceSecret(ctx(r), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.provisioned(p))
	return nil
}

func (a *API) disableDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	return a.setDisabled(w, r, c, true)
}

func (a *API) enableDevice(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	return a.setDisabled(w, r, c, false)
}

func (a *API) setDisabled(w http.ResponseWriter, r *http.Request, c ops.Caller, disabled bool) error {
	id := r.PathValue("id")
	if _, err := a.ops.SetDeviceDisabled(ctx(r), c, id, disabled); err != nil {
		return err
	}
	d, err := a.ops.Device(ctx(r), c, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newDeviceJSON(d))
	return nil
}

// streamJSON is an open stream or forwarded request to a device.
type streamJSON struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	TokenID   string    `json:"tokenId,omitempty"`
	Port      uint16    `json:"port"`
	Client    string    `json:"client"`
	Via       string    `json:"via"` // connect, absolute, subdomain, client-tool, websockify
	Since     time.Time `json:"since"`
	BytesUp   int64     `json:"bytesToDevice"`
	BytesDown int64     `json:"bytesFromDevice"`
}

func newStreamJSON(s proxy.Stream) streamJSON {
	client := ""
	if s.Client.IsValid() {
		client = s.Client.String()
	}
	return streamJSON{ID: s.ID, User: s.User, TokenID: s.TokenID, Port: s.Port, Client: client, Via: s.Via,
		Since: s.Since.UTC(), BytesUp: s.BytesUp, BytesDown: s.BytesDown}
}

func (a *API) listStreams(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	ss, err := a.ops.DeviceStreams(ctx(r), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := page[streamJSON]{Items: make([]streamJSON, len(ss))}
	for i, s := range ss {
		out.Items[i] = newStreamJSON(s)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) cutStream(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if _, err := a.ops.CutStream(ctx(r), c, r.PathValue("id"), r.PathValue("streamId")); err != nil {
		return err
	}
	return noContent(w)
}
