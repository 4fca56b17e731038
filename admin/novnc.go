package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"regexp"
	"strings"

	"github.com/reflector-dev/reflector/admin/thirdparty"
)

// noVNC's own app (vnc.html, embedded from admin/thirdparty) on a device
// host, under novncPrefix: https://<device>.<domain>/.reflector/novnc/vnc.html
// ?path=my-devices/websockify%3Fport%3D5900&autoconnect=true connects
// through macchina.io's websockify path on the same host, as macchina.io
// REMOTE's own viewer did. Its requests authenticate like every other on
// the device's host (DeviceAuth); nothing under the prefix reaches the
// device.
const (
	novncPrefix = reservedPrefix + "novnc/"
	novncPage   = "vnc.html"
)

// IsNoVNC reports whether r, on a device host, asks for noVNC's app, which
// the router sends to ServeNoVNC.
func IsNoVNC(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, novncPrefix) || r.URL.Path == strings.TrimSuffix(novncPrefix, "/")
}

// novncInline finds vnc.html's one inline script, which loads the app: the
// policy allows it by its hash, so the vendored page stays unchanged.
var novncInline = regexp.MustCompile(`<script type="module">([\s\S]*?)</script>`)

// novncPolicy is the Content-Security-Policy of noVNC's app: its own files,
// its inline start-up script by hash, images also as data: URLs (noVNC
// draws the remote cursor and some images from them), the WebSocket to this
// host, no framing, no forms sent anywhere.
func novncPolicy() (string, error) {
	page, err := fs.ReadFile(thirdparty.NoVNC, novncPage)
	if err != nil {
		return "", err
	}
	scripts := novncInline.FindAllSubmatch(page, -1)
	if len(scripts) != 1 {
		return "", errors.New("noVNC's vnc.html: want one inline module script to allow by its hash")
	}
	sum := sha256.Sum256(scripts[0][1])
	return "default-src 'self'; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"style-src 'self'; img-src 'self' data:; font-src 'self'; media-src 'self'; connect-src 'self'; " +
		"frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'", nil
}

// ServeNoVNC serves noVNC's app on the host of device: the user's device
// session (or bearer token) first, through DeviceAuth, which sends a
// browser without one through the hand-off (where access to the device is
// checked) and back, then the file. The files are noVNC's own and public;
// access is checked again on every connection, by the bridge.
func (a *Admin) ServeNoVNC(w http.ResponseWriter, r *http.Request, device string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if _, ok := a.DeviceAuth(w, r, device); !ok {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, novncPrefix)
	if name == "" || r.URL.Path == strings.TrimSuffix(novncPrefix, "/") {
		loc := novncPrefix + novncPage
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		redirect(w, loc)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", a.novncCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	thirdparty.ServeFile(w, r, thirdparty.NoVNC, name)
}
