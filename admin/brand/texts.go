package brand

// Defaults are the texts of every page, by key. docs/branding.md lists
// every key with its text; a brand's texts.json overrides any of them.
// Each part of the UI keeps its texts in its own file.
var Defaults = merged(coreTexts, deviceTexts, peopleTexts, auditTexts, vncTexts, sshTexts)

// merged is the union of maps; a key in two of them is a programming
// error, found at start.
func merged(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			if _, dup := out[k]; dup {
				panic("brand: text key " + k + " defined twice")
			}
			out[k] = v
		}
	}
	return out
}

// coreTexts are the texts of the frame: product, sign-in, navigation,
// dashboard.
var coreTexts = map[string]string{
	"productName": "Reflector",
	"footer":      "Remote access to your devices",

	// Sign-in, TOTP and sign-out pages.
	"signIn.title":       "Sign in",
	"signIn.intro":       "",
	"signIn.user":        "User name",
	"signIn.password":    "Password",
	"signIn.button":      "Sign in",
	"signIn.failed":      "Wrong user name or password.",
	"signIn.expired":     "That sign-in has expired. Please enter your password again.",
	"signIn.tooMany":     "Too many failed attempts. Try again in {seconds} seconds.",
	"signIn.formRefused": "Sign-in form not accepted",
	"signIn.refused":     "Request refused",
	"signIn.crossOrigin": "This form was sent from another site. Please use the form on this page.",
	"totp.title":         "One-time code",
	"totp.signingInAs":   "Signing in as",
	"totp.intro":         "Enter the 6-digit code from your authenticator app.",
	"totp.code":          "Code",
	"totp.button":        "Continue",
	"totp.failed":        "Wrong code. Please try again.",
	"totp.startAgain":    "Start again",
	"signOut.title":      "Sign out",
	"signOut.signedInAs": "Signed in as",
	"signOut.button":     "Sign out",
	"signOut.everywhere": "Sign out everywhere",

	// The plain start page, when the web UI is off.
	"home.title":     "Your devices",
	"home.devices":   "Your devices:",
	"home.noDevices": "No devices are shared with you.",

	// Navigation.
	"nav.devices": "Devices",
	"nav.people":  "People",
	"nav.keys":    "Enrolment keys",
	"nav.audit":   "Audit log",
	"nav.me":      "My account",

	// Dashboard.
	"dashboard.title":      "Devices",
	"dashboard.search":     "Search id or name",
	"dashboard.allGroups":  "All groups",
	"dashboard.anyStatus":  "Any status",
	"dashboard.online":     "Online",
	"dashboard.offline":    "Offline",
	"dashboard.filter":     "Filter",
	"dashboard.empty":      "No devices match.",
	"dashboard.next":       "Next page",
	"dashboard.first":      "First page",
	"dashboard.addDevice":  "Add a device",
	"dashboard.neverSeen":  "never seen",
	"dashboard.colName":    "Name",
	"dashboard.colID":      "Id",
	"dashboard.colGroups":  "Groups",
	"dashboard.colAgent":   "Agent",
	"dashboard.colSince":   "Connected since / last seen",
	"dashboard.colStreams": "Streams",
	"dashboard.openWeb":    "web UI",
	"dashboard.pac":        "Browser proxy configuration (PAC):",
}
