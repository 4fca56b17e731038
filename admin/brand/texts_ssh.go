package brand

// sshTexts are the texts of the browser's SSH terminal (/devices/{id}/ssh)
// and of the device page's parts that lead to it.
var sshTexts = map[string]string{
	// The device page.
	"device.ssh.terminal":      "Terminal in the browser",
	"device.hostKey":           "SSH host key",
	"device.hostKey.none":      "None yet: the terminal in the browser trusts the first it sees.",
	"device.hostKey.trusted":   "trusted since",
	"device.hostKey.reset":     "Reset SSH host key",
	"device.hostKey.confirm":   "Forget this device's SSH host key? The next terminal session trusts whatever key the device shows then. Do this only when you know why the key changed (the device was reinstalled).",
	"device.done.hostKeyReset": "The SSH host key was forgotten; the next terminal session trusts the key the device shows.",

	// The terminal page.
	"ssh.title":         "SSH to",
	"ssh.port":          "SSH port",
	"ssh.back":          "Back to the device",
	"ssh.clearNote":     "The reflector is the SSH client here: it sees this session in the clear, as the device does. Nothing you type here is kept.",
	"ssh.login":         "Log in on the device",
	"ssh.user":          "User name on the device",
	"ssh.password":      "Password",
	"ssh.passwordHelp":  "Sent to the device's SSH server once and not kept. Leave it empty when the server asks for codes instead.",
	"ssh.needsScript":   "The terminal needs JavaScript.",
	"ssh.connect":       "Connect",
	"ssh.answer":        "Answer",
	"ssh.disabled":      "The terminal in the browser is turned off by the operator of this reflector (serve --no-web-ssh). Use SSH through the reflector instead: the device's page shows how.",
	"ssh.disabledTitle": "Terminal in the browser is off",
	"ssh.connecting":    "Connecting…",
	"ssh.hostKeyNew":    "New host key, trusted:",
	"ssh.hostKeyKnown":  "Host key as before:",
	"ssh.connected":     "Connected.",
	"ssh.closed":        "The connection closed.",
	"ssh.pasteNote":     "Copy: select text (Ctrl+Shift+C). Paste: Ctrl+Shift+V or the browser's menu.",
}
