package web

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/reflector-dev/reflector/admin/thirdparty"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/webssh"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The SSH terminal in the browser (docs/web-ssh.md): a page with xterm.js
// and a login form, whose script opens a WebSocket on the admin host that
// internal/webssh serves; the reset of a device's kept host key.

// sshRoutes are the terminal page's routes for signed-in users; the
// WebSocket's is sshSocket (not a page: it never redirects to the login).
func (w *Web) sshRoutes() map[string]handler {
	return map[string]handler{
		"GET /devices/{id}/ssh":                 w.sshPage,
		"POST /devices/{id}/ssh-host-key/reset": w.resetHostKey,
	}
}

// sshView is the terminal page's data.
type sshView struct {
	D      ops.Device
	Title  string
	Port   uint16
	Socket string // the WebSocket's path
}

// sshPage shows the terminal page of a device the visitor may reach.
func (w *Web) sshPage(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if w.cfg.WebSSH == nil {
		w.render(rw, http.StatusNotFound, "message", v, view{Title: w.brand.Text("ssh.disabledTitle"), Data: w.brand.Text("ssh.disabled")})
		return nil
	}
	d, err := w.ops.Device(r.Context(), v.caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	sv := sshView{D: d, Title: d.ID, Port: sshPort(d), Socket: "/devices/" + url.PathEscape(d.ID) + "/ssh/websocket"}
	if d.Name != "" {
		sv.Title = d.Name
	}
	nonce, err := styleNonce()
	if err != nil {
		return err
	}
	w.render(rw, http.StatusOK, "ssh", v, view{Title: w.brand.Text("ssh.title") + " " + sv.Title, Nav: "devices", Data: sv, StyleNonce: nonce})
	return nil
}

// sshPort is the device's SSH port as the terminal uses it: its agent's
// sshPort property, else 22.
func sshPort(d ops.Device) uint16 {
	if d.Online {
		if n, err := strconv.ParseUint(d.Tunnel.Properties["sshPort"], 10, 16); err == nil && n != 0 {
			return uint16(n)
		}
	}
	return 22
}

// styleNonce is a fresh CSP nonce for the <style> elements xterm.js makes
// (ssh.js stamps it on them): 128 random bits.
func styleNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("style nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sshSocket serves the terminal's WebSocket, GET /devices/{id}/ssh/websocket
// on the admin host, in this order: the Origin must be exactly the admin
// host (a WebSocket is not bound by the same-origin policy and carries
// the session cookie, and every device host is the same site: a device's
// page must not open a shell with the user's cookie), then the session
// cookie, then the device as the visitor may see it; only then does
// internal/webssh take the upgrade and open a stream.
func (w *Web) sshSocket(rw http.ResponseWriter, r *http.Request) {
	if !exactOrigin(r) {
		w.log.Warn("web ssh: foreign origin refused", "origin", r.Header.Get("Origin"), "client", tunnel.ClientAddr(r))
		http.Error(rw, "web SSH: refused: the page is not of the admin host", http.StatusForbidden)
		return
	}
	if w.cfg.WebSSH == nil {
		http.Error(rw, "web SSH: turned off by the operator", http.StatusNotFound)
		return
	}
	cred, _, ok, err := w.cfg.Session(r)
	if err != nil {
		w.log.Error("web ssh: session check failed", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	if !ok {
		http.Error(rw, "web SSH: sign in first", http.StatusUnauthorized)
		return
	}
	client := tunnel.ClientAddr(r)
	d, err := w.ops.Device(r.Context(), ops.FromCredential(cred, client), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		http.Error(rw, "web SSH: no such device", http.StatusNotFound)
		return
	}
	if err != nil {
		w.log.Error("web ssh: device look-up failed", "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	w.cfg.WebSSH.Serve(rw, r, cred, client, d.ID)
}

// resetHostKey forgets a device's SSH host key (admins), after the device
// page's confirmation.
func (w *Web) resetHostKey(rw http.ResponseWriter, r *http.Request, v *visit) error {
	id := r.PathValue("id")
	if _, err := w.ops.ResetHostKey(r.Context(), v.caller, id); err != nil {
		return err
	}
	redirect(rw, "/devices/"+url.PathEscape(id)+"?done=hostKeyReset")
	return nil
}

// hostKeyView is a device's kept host key as its page shows it.
type hostKeyView struct {
	Kept        bool
	Fingerprint string // SHA256:…
	Added       string
}

// serveXTerm serves xterm.js, its fit add-on and its stylesheet (the
// licences are in the repository and the binary, not served: no extension).
func (w *Web) serveXTerm(rw http.ResponseWriter, r *http.Request) {
	thirdparty.ServeFile(rw, r, thirdparty.XTerm, "xterm/"+r.PathValue("file"))
}

// hostKeyOf is what the device page shows of id's kept host key.
func (w *Web) hostKeyOf(r *http.Request, v *visit, id string) (hostKeyView, error) {
	k, err := w.ops.HostKey(r.Context(), v.caller, id)
	if errors.Is(err, store.ErrNotFound) {
		return hostKeyView{}, nil
	}
	if err != nil {
		return hostKeyView{}, err
	}
	return hostKeyView{Kept: true, Fingerprint: webssh.Fingerprint(k.Key), Added: k.Added.UTC().Format("2006-01-02 15:04 UTC")}, nil
}
