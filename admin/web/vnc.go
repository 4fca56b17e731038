package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/admin/thirdparty"
	"github.com/reflector-dev/reflector/tunnel"
)

// The VNC viewer (issue 19): a page of the admin host with noVNC (embedded
// from admin/thirdparty) and our own script (assets/vnc.js), whose
// WebSocket goes to the admin host too and is bridged by the proxy
// (Config.VNC) to a stream to the device's VNC port. The VNC password is
// asked for in the page and answered there: noVNC uses it for the VNC
// server's challenge, so it never reaches the reflector.

// defaultVNCPort when neither the query nor the agent's vncPort property
// names one, as proxy's.
const defaultVNCPort = 5900

// vncRoutes are the viewer's routes that need a signed-in visitor.
func (w *Web) vncRoutes() map[string]handler {
	if w.cfg.VNC == nil {
		return nil
	}
	return map[string]handler{"GET /devices/{id}/vnc": w.vncPage}
}

// vncView is the viewer page's data.
type vncView struct {
	ID     string
	Title  string // the device's name, or id
	Port   uint16 // the port to connect to
	Ports  []uint16
	Socket string // the WebSocket's path and query
}

// vncPage shows the viewer for a device's port: ?port=, else the agent's
// vncPort property, else the record's port 5900 if it has one, else 5900.
// The choice offers the ports the device allows (its record's, else its
// agent's while online).
func (w *Web) vncPage(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.ops.Device(r.Context(), v.caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	vv := vncView{ID: d.ID, Title: d.ID}
	if d.Name != "" {
		vv.Title = d.Name
	}
	vv.Ports = d.Ports
	if len(vv.Ports) == 0 && d.Online {
		vv.Ports = d.Tunnel.Ports
	}
	vv.Port = w.services(r, v, d).VNCPort
	if vv.Port == 0 {
		vv.Port = defaultVNCPort
	}
	if q := r.URL.Query().Get("port"); q != "" {
		n, err := strconv.ParseUint(q, 10, 16)
		if err != nil || n == 0 {
			w.pages.message(rw, r, http.StatusBadRequest, w.brand.Text("vnc.title"), w.brand.Text("vnc.badPort"))
			return nil
		}
		vv.Port = uint16(n)
	}
	if !slices.Contains(vv.Ports, vv.Port) {
		vv.Ports = append(slices.Clone(vv.Ports), vv.Port)
		slices.Sort(vv.Ports)
	}
	vv.Socket = "/devices/" + url.PathEscape(d.ID) + "/vnc/websocket?port=" + strconv.Itoa(int(vv.Port))
	w.render(rw, http.StatusOK, "vnc", v, view{Title: w.brand.Text("vnc.title") + ": " + vv.Title, Nav: "devices", Data: vv})
	return nil
}

// serveVNCSocket serves the viewer's WebSocket, in this order: the page
// must be of the admin host exactly (a WebSocket is not bound by the
// same-origin policy, and every device host is the same site as the admin
// host, so a device's page could otherwise open it with the user's admin
// session), then the admin session, then the proxy (Config.VNC) checks
// access and the port, opens the stream and bridges it. Failures before the
// stream are plain statuses: the browser shows noVNC a failed connection.
func (w *Web) serveVNCSocket(rw http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !exactOrigin(r) {
		w.log.Warn("vnc websocket: foreign origin refused", "device", id, "origin", r.Header.Values("Origin"), "client", tunnel.ClientAddr(r))
		http.Error(rw, "refused: the VNC viewer's connection must come from the reflector's own page", http.StatusForbidden)
		return
	}
	cred, _, ok, err := w.cfg.Session(r)
	if err != nil {
		w.log.Error("vnc websocket: check session", "device", id, "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	if !ok {
		http.Error(rw, "sign in first", http.StatusUnauthorized)
		return
	}
	var port uint16
	if q := r.URL.Query().Get("port"); q != "" {
		n, err := strconv.ParseUint(q, 10, 16)
		if err != nil || n == 0 {
			http.Error(rw, "port: 1-65535 required", http.StatusBadRequest)
			return
		}
		port = uint16(n)
	}
	w.cfg.VNC(rw, r, cred, id, port)
}

// serveNoVNC serves the noVNC modules the viewer imports: core/ and
// vendor/ (pako) of the embedded tree, nothing else of it.
func (w *Web) serveNoVNC(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("path")
	if !strings.HasPrefix(name, "core/") && !strings.HasPrefix(name, "vendor/") {
		http.NotFound(rw, r)
		return
	}
	thirdparty.ServeFile(rw, r, thirdparty.NoVNC, name)
}
