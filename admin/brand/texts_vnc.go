package brand

// vncTexts are the texts of the VNC viewer and its button on the device
// page.
var vncTexts = map[string]string{
	"device.openVNC":    "VNC in the browser",
	"vnc.title":         "VNC",
	"vnc.back":          "Back to the device",
	"vnc.badPort":       "The port must be a number from 1 to 65535.",
	"vnc.port":          "Port",
	"vnc.connectPort":   "Connect",
	"vnc.connecting":    "Connecting…",
	"vnc.connected":     "Connected",
	"vnc.disconnected":  "Disconnected",
	"vnc.failed":        "Disconnected: could not connect. The device may be offline, the port not allowed, or no VNC server listening on it.",
	"vnc.lost":          "Disconnected: the connection ended (the device or its VNC server went away, or your access was removed).",
	"vnc.authFailed":    "Disconnected: the VNC server refused the password.",
	"vnc.reconnect":     "Reconnect",
	"vnc.ctrlAltDel":    "Send Ctrl-Alt-Del",
	"vnc.credentials":   "The VNC server asks for a password",
	"vnc.username":      "User name",
	"vnc.password":      "VNC password",
	"vnc.passwordHelp":  "It stays in this page: noVNC answers the VNC server with it inside the connection (with classic VNC authentication only the answer to the server's challenge crosses the wire), and the reflector never stores it.",
	"vnc.sendPassword":  "Send",
	"vnc.clipboard":     "Clipboard",
	"vnc.clipboardHelp": "Text copied on the device appears here. Type or paste text here and send it to paste it on the device.",
	"vnc.clipboardSend": "Send to the device",
	"vnc.noScript":      "The VNC viewer needs JavaScript.",
	"vnc.keyboardHelp":  "Click the screen to type into it; the keys go to the device until you click outside.",
}
