package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// macchina.io REMOTE's two API paths: /my-devices/api/provision, which
// hands out a WebTunnelAgent.properties for a device and so gives it a new
// secret, and /my-devices/api/devices, the device listing integrators'
// scripts call.

// addDeviceSecret adds a device with the record d and returns its secret.
func (r *rig) addDeviceSecret(d store.Device) string {
	r.t.Helper()
	secret, err := r.srv.Store().AddDevice(d)
	if err != nil {
		r.t.Fatal(err)
	}
	return secret
}

// secretWorks reports whether secret is device's secret now.
func (r *rig) secretWorks(device, secret string) bool {
	r.t.Helper()
	_, err := r.srv.Store().CheckDeviceSecret(context.Background(), device, secret)
	return err == nil
}

// provisionPath is the provisioning path with query parameters as pairs.
func provisionPath(params ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return api.CompatProvisionPath + "?" + q.Encode()
}

// property is the value of key in a properties file, and whether it is set
// (not commented out).
func property(file, key string) (string, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + ` = (.*)$`).FindStringSubmatch(file)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func TestProvisionHandsOutAWebTunnelAgentPropertiesWithANewSecret(t *testing.T) {
	r := newRig(t)
	old := r.addDeviceSecret(store.Device{ID: "pump-17", Name: "Pump 17", Ports: []uint16{80, 22}, HTTPPort: 80})

	status, body, hdr := r.call(http.MethodGet, provisionPath("device", "pump-17"), r.adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("provision: %d %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := hdr.Get("Content-Disposition"); cd != `attachment; filename="WebTunnelAgent.properties"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if hdr.Get("X-Reflector-Secret-Rotated") != "true" {
		t.Errorf("X-Reflector-Secret-Rotated %q, want true", hdr.Get("X-Reflector-Secret-Rotated"))
	}
	file := string(body)
	want := map[string]string{
		"webtunnel.deviceId":     "pump-17",
		"webtunnel.domain":       "00000000-0000-0000-0000-000000000000",
		"webtunnel.reflectorURI": r.srv.URL(),
		"webtunnel.username":     "${webtunnel.deviceId}@${webtunnel.domain}",
		"webtunnel.ports":        "22, 80",
		"webtunnel.httpPort":     "80",
		"webtunnel.deviceName":   "Pump 17",
	}
	for k, v := range want {
		if got, ok := property(file, k); !ok || got != v {
			t.Errorf("%s = %q (set: %v), want %q\n%s", k, got, ok, v, file)
		}
	}
	if !regexp.MustCompile(`(?m)^# .*secret was rotated`).MatchString(file) {
		t.Errorf("no comment line says the secret was rotated:\n%s", file)
	}
	// The file leaves accepting a self-signed certificate to the reader.
	if _, set := property(file, "tls.acceptUnknownCertificate"); set || !strings.Contains(file, "#tls.acceptUnknownCertificate = true") {
		t.Errorf("tls.acceptUnknownCertificate should be there, commented out:\n%s", file)
	}

	password, _ := property(file, "webtunnel.password")
	if !r.secretWorks("pump-17", password) {
		t.Errorf("the file's password %q is not the device's secret", password)
	}
	if r.secretWorks("pump-17", old) {
		t.Error("the old secret still works after provisioning")
	}
}

func TestProvisionHTTPPortOverridesTheRecords(t *testing.T) {
	r := newRig(t)
	r.addDeviceSecret(store.Device{ID: "pump-17", HTTPPort: 80})
	status, body, _ := r.call(http.MethodGet, provisionPath("device", "pump-17", "httpPort", "8080"), r.adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("provision: %d %s", status, body)
	}
	if got, _ := property(string(body), "webtunnel.httpPort"); got != "8080" {
		t.Errorf("webtunnel.httpPort = %q, want 8080\n%s", got, body)
	}
}

func TestProvisionAsReflectorAgentGivesOurAgentsCommandLine(t *testing.T) {
	r := newRig(t)
	old := r.addDeviceSecret(store.Device{ID: "pump-17", Ports: []uint16{22, 80}})
	status, body, hdr := r.call(http.MethodGet, provisionPath("device", "pump-17", "format", "reflector-agent"), r.adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("provision: %d %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" || hdr.Get("X-Reflector-Secret-Rotated") != "true" {
		t.Errorf("Content-Type %q, X-Reflector-Secret-Rotated %q", ct, hdr.Get("X-Reflector-Secret-Rotated"))
	}
	m := regexp.MustCompile(`(?m)^` + agent.SecretEnv + `='([^']+)' reflector-agent --reflector (\S+) --device pump-17 --ports 22,80 --fingerprint (\S+)$`).FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no agent command line in:\n%s", body)
	}
	if m[2] != r.srv.URL() || m[3] != r.srv.Fingerprint() {
		t.Errorf("reflector %s fingerprint %s, want %s %s", m[2], m[3], r.srv.URL(), r.srv.Fingerprint())
	}
	if !r.secretWorks("pump-17", m[1]) || r.secretWorks("pump-17", old) {
		t.Error("the line's secret is not the device's new secret, or the old one still works")
	}
	if !regexp.MustCompile(`(?m)^# .*secret was rotated`).Match(body) {
		t.Errorf("no comment line says the secret was rotated:\n%s", body)
	}
}

// Every refusal leaves the secret as it was.
func TestProvisionRefusals(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	secret := r.addDeviceSecret(store.Device{ID: "pump-17", Groups: []string{"plant-a"}})
	r.addUser("alice", store.RoleUser, "plant-a")
	alice := r.token("alice")
	tests := []struct {
		name, token string
		params      []string
		status      int
		code, field string
	}{
		{"NoDevice", r.adminToken, nil, 400, "invalid", "device"},
		{"UnknownDevice", r.adminToken, []string{"device", "nosuch"}, 404, "not_found", ""},
		{"User", alice, []string{"device", "pump-17"}, 403, "forbidden", ""},
		{"HTTPPortNotANumber", r.adminToken, []string{"device", "pump-17", "httpPort", "http"}, 400, "invalid", "httpPort"},
		{"HTTPPortZero", r.adminToken, []string{"device", "pump-17", "httpPort", "0"}, 400, "invalid", "httpPort"},
		{"HTTPPortTooLarge", r.adminToken, []string{"device", "pump-17", "httpPort", "65536"}, 400, "invalid", "httpPort"},
		{"UnknownFormat", r.adminToken, []string{"device", "pump-17", "format", "json"}, 400, "invalid", "format"},
		{"NoCredentials", "", []string{"device", "pump-17"}, 401, "unauthorized", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.t = t
			r.mustFail(tt.status, tt.code, tt.field, http.MethodGet, provisionPath(tt.params...), tt.token, nil)
			if !r.secretWorks("pump-17", secret) {
				t.Fatal("a refused provisioning changed the secret")
			}
		})
	}
}

// sessionFor signs user in as the web login does and returns the session
// cookie and its CSRF token.
func (r *rig) sessionFor(user string) (cookie, csrf string) {
	r.t.Helper()
	tok, _, err := r.srv.Store().CreateSession(user, "")
	if err != nil {
		r.t.Fatal(err)
	}
	cookie = admin.SessionCookie + "=" + tok
	var me struct {
		CSRFToken string `json:"csrfToken"`
	}
	status, body, _ := r.call(http.MethodGet, api.Prefix+"/me", "", nil, "Cookie", cookie)
	if status != http.StatusOK || json.Unmarshal(body, &me) != nil || me.CSRFToken == "" {
		r.t.Fatalf("GET /me with the session: %d %s", status, body)
	}
	return cookie, me.CSRFToken
}

// adminOrigin is the admin host's origin as a browser names it.
func (r *rig) adminOrigin() string {
	return "https://localhost:" + strings.TrimPrefix(r.base[strings.LastIndex(r.base, ":"):], ":")
}

// A page of another site that navigates the admin's browser to the
// provisioning URL (a link, window.open, a top-level GET form: SameSite=Lax
// sends the session cookie along) must not rotate the device's secret, nor
// may a page of a device (same site, another origin).
func TestProvisionRefusesACrossSiteNavigationWithTheSessionCookie(t *testing.T) {
	r := newRig(t)
	secret := r.addDeviceSecret(store.Device{ID: "pump-17"})
	cookie, _ := r.sessionFor("root")
	for _, fetchSite := range []string{"cross-site", "same-site", ""} {
		t.Run("SecFetchSite="+fetchSite, func(t *testing.T) {
			r.t = t
			headers := []string{"Cookie", cookie, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
			if fetchSite != "" {
				headers = append(headers, "Sec-Fetch-Site", fetchSite)
			}
			status, body, hdr := r.call(http.MethodGet, provisionPath("device", "pump-17"), "", nil, headers...)
			if status != http.StatusForbidden || !strings.Contains(string(body), `"forbidden"`) {
				t.Errorf("%d %s, want 403 forbidden", status, body)
			}
			if hdr.Get("X-Reflector-Secret-Rotated") != "" || !r.secretWorks("pump-17", secret) {
				t.Fatal("the secret was rotated")
			}
		})
	}
}

// The admin's own pages (same-origin) and a URL typed or bookmarked
// (Sec-Fetch-Site: none) may provision with the session cookie.
func TestProvisionWithTheSessionFromTheAdminHostOrATypedURL(t *testing.T) {
	r := newRig(t)
	r.addDeviceSecret(store.Device{ID: "pump-17"})
	cookie, _ := r.sessionFor("root")
	for _, fetchSite := range []string{"same-origin", "none"} {
		status, body, hdr := r.call(http.MethodGet, provisionPath("device", "pump-17"), "", nil,
			"Cookie", cookie, "Sec-Fetch-Site", fetchSite)
		if status != http.StatusOK || hdr.Get("X-Reflector-Secret-Rotated") != "true" {
			t.Errorf("Sec-Fetch-Site %s: %d %s", fetchSite, status, body)
		}
	}
}

// POST does the same, under the usual rules for the session cookie: the
// CSRF token and the admin host's Origin.
func TestProvisionByPOSTWithTheSessionNeedsTheCSRFToken(t *testing.T) {
	r := newRig(t)
	secret := r.addDeviceSecret(store.Device{ID: "pump-17"})
	cookie, csrf := r.sessionFor("root")
	path := provisionPath("device", "pump-17")

	status, body, _ := r.call(http.MethodPost, path, "", nil, "Cookie", cookie, "Origin", r.adminOrigin())
	if status != http.StatusForbidden || !r.secretWorks("pump-17", secret) {
		t.Fatalf("POST without the CSRF token: %d %s, or the secret changed", status, body)
	}
	status, body, _ = r.call(http.MethodPost, path, "", nil, "Cookie", cookie, "Origin", "https://evil.example", api.CSRFHeader, csrf)
	if status != http.StatusForbidden || !r.secretWorks("pump-17", secret) {
		t.Fatalf("POST from another origin: %d %s, or the secret changed", status, body)
	}
	status, body, hdr := r.call(http.MethodPost, path, "", nil, "Cookie", cookie, "Origin", r.adminOrigin(), api.CSRFHeader, csrf)
	if status != http.StatusOK || hdr.Get("X-Reflector-Secret-Rotated") != "true" || r.secretWorks("pump-17", secret) {
		t.Fatalf("POST with the CSRF token: %d %s", status, body)
	}
	// A token needs neither.
	status, body, _ = r.call(http.MethodPost, path, r.adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("POST with a token: %d %s", status, body)
	}
}

// Provisioning a connected device drops its agent: the agent held a tunnel
// authenticated with the old secret.
func TestProvisionDropsTheConnectedAgent(t *testing.T) {
	r := newRig(t)
	secret := r.addDeviceSecret(store.Device{ID: "pump-17", Ports: []uint16{80}})
	r.startAgent("pump-17", secret)
	status, body, _ := r.call(http.MethodGet, provisionPath("device", "pump-17"), r.adminToken, nil)
	if status != http.StatusOK || !strings.Contains(string(body), "was dropped") {
		t.Fatalf("provision: %d %s", status, body)
	}
	if _, online := r.srv.Hub().Status("pump-17"); online {
		t.Error("the agent with the old secret is still connected")
	}
}

// compatDevice is an entry of /my-devices/api/devices.
type compatDevice struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
	Status string `json:"status"`
}

func (r *rig) compatDevices(token, query string) []compatDevice {
	r.t.Helper()
	status, body, hdr := r.call(http.MethodGet, api.CompatDevicesPath+query, token, nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		r.t.Fatalf("GET %s%s: %d %s %s", api.CompatDevicesPath, query, status, hdr.Get("Content-Type"), body)
	}
	var out []compatDevice
	if err := json.Unmarshal(body, &out); err != nil {
		r.t.Fatalf("not a JSON array of devices: %v\n%s", err, body)
	}
	return out
}

func ids(ds []compatDevice) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.ID)
	}
	return strings.Join(s, ",")
}

func TestCompatDevicesListsOnlyTheCallersDevices(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	r.addGroup("plant-b")
	r.addDeviceSecret(store.Device{ID: "a1", Name: "Pump A1", Groups: []string{"plant-a"}})
	r.addDeviceSecret(store.Device{ID: "b1", Groups: []string{"plant-b"}})
	r.addUser("alice", store.RoleUser, "plant-a")

	got := r.compatDevices(r.token("alice"), "?status=all")
	if ids(got) != "a1" {
		t.Fatalf("alice sees %s, want a1", ids(got))
	}
	if d := got[0]; d.Name != "Pump A1" || d.Domain != "00000000-0000-0000-0000-000000000000" || d.Status != "offline" {
		t.Errorf("a1: %+v", d)
	}
	if got := r.compatDevices(r.adminToken, ""); ids(got) != "a1,b1" {
		t.Errorf("the admin sees %s, want a1,b1", ids(got))
	}
	// A user with no device gets an empty array, not null.
	r.addUser("bob", store.RoleUser)
	status, body, _ := r.call(http.MethodGet, api.CompatDevicesPath, r.token("bob"), nil)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("bob: %d %s, want []", status, body)
	}
}

func TestCompatDevicesFiltersByStatus(t *testing.T) {
	r := newRig(t)
	secret := r.addDeviceSecret(store.Device{ID: "on1", Ports: []uint16{80}})
	r.addDeviceSecret(store.Device{ID: "off1"})
	r.startAgent("on1", secret)
	for query, want := range map[string]string{
		"":                "off1,on1",
		"?status=all":     "off1,on1",
		"?status=online":  "on1",
		"?status=offline": "off1",
	} {
		if got := r.compatDevices(r.adminToken, query); ids(got) != want {
			t.Errorf("%q: %s, want %s", query, ids(got), want)
		}
	}
	if got := r.compatDevices(r.adminToken, "?status=online"); len(got) != 1 || got[0].Status != "online" {
		t.Errorf("online device: %+v", got)
	}
	r.mustFail(http.StatusBadRequest, "invalid", "status", http.MethodGet, api.CompatDevicesPath+"?status=up", r.adminToken, nil)
	r.mustFail(http.StatusUnauthorized, "unauthorized", "", http.MethodGet, api.CompatDevicesPath, "", nil)
}

// A fleet larger than a page (ops.MaxPage) comes back whole, in id order.
func TestCompatDevicesReturnsEveryPage(t *testing.T) {
	r := newRig(t)
	const n = 2*ops.MaxPage + 1
	for i := range n {
		r.addDeviceSecret(store.Device{ID: fmt.Sprintf("dev-%05d", i)})
	}
	got := r.compatDevices(r.adminToken, "?status=all")
	if len(got) != n {
		t.Fatalf("%d devices, want %d", len(got), n)
	}
	for i, d := range got {
		if want := fmt.Sprintf("dev-%05d", i); d.ID != want {
			t.Fatalf("device %d is %s, want %s", i, d.ID, want)
		}
	}
}
