package api_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

type device struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Groups   []string `json:"groups"`
	Ports    []uint16 `json:"ports"`
	HTTPPort uint16   `json:"httpPort"`
	HTTPTLS  bool     `json:"httpTLS"`
	Disabled bool     `json:"disabled"`
	Status   struct {
		Online      bool              `json:"online"`
		AgentKind   string            `json:"agentKind"`
		OpenStreams *int64            `json:"openStreams"`
		Properties  map[string]string `json:"properties"`
	} `json:"status"`
}

type devicePage struct {
	Items      []device `json:"items"`
	NextCursor string   `json:"nextCursor"`
}

type provisioned struct {
	Device       device `json:"device"`
	Secret       string `json:"secret"`
	AgentCommand string `json:"agentCommand"`
	Properties   string `json:"webTunnelAgentProperties"`
	Disconnected bool   `json:"disconnected"`
}

func TestAddDeviceShowsTheSecretOnceWithWhatTheAgentNeeds(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	var p provisioned
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/devices", r.adminToken,
		map[string]any{"id": "pump-17", "name": "Pump 17", "groups": []string{"plant-a"}, "ports": []int{80, 22}}, &p)
	if p.Device.ID != "pump-17" || p.Device.Name != "Pump 17" || !slices.Equal(p.Device.Groups, []string{"plant-a"}) ||
		!slices.Equal(p.Device.Ports, []uint16{22, 80}) || p.Device.Status.Online {
		t.Errorf("device: %+v", p.Device)
	}
	if _, err := r.srv.Store().CheckDeviceSecret(t.Context(), "pump-17", p.Secret); err != nil {
		t.Errorf("the secret shown does not open the device: %v", err)
	}
	for _, want := range []string{"REFLECTOR_DEVICE_SECRET='" + p.Secret + "'", "--device pump-17", "--ports 22,80", "--fingerprint"} {
		if !strings.Contains(p.AgentCommand, want) {
			t.Errorf("agent command %q lacks %q", p.AgentCommand, want)
		}
	}
	for _, want := range []string{"webtunnel.deviceId = pump-17", "webtunnel.password = " + p.Secret, "webtunnel.ports = 22, 80"} {
		if !strings.Contains(p.Properties, want) {
			t.Errorf("properties lack %q:\n%s", want, p.Properties)
		}
	}
	// Shown once: reading the device again shows no secret.
	status, body, _ := r.call(http.MethodGet, api.Prefix+"/devices/pump-17", r.adminToken, nil)
	if status != http.StatusOK || strings.Contains(string(body), p.Secret) {
		t.Errorf("GET the device: %d %s", status, body)
	}
	events, _ := r.srv.Store().AuditEvents(store.AuditFilter{Kind: store.AuditDeviceAdd})
	if len(events) != 1 || events[0].Actor != "root" || events[0].Client != "127.0.0.1" || events[0].Device != "pump-17" {
		t.Errorf("audit: %+v", events)
	}
}

func TestAddDeviceAdoptsTheDevicesOwnSecretWithoutShowingIt(t *testing.T) {
	r := newRig(t)
	status, body, _ := r.call(http.MethodPost, api.Prefix+"/devices", r.adminToken, map[string]any{"id": "wt-1", "secret": "the-devices-own"})
	if status != http.StatusCreated || strings.Contains(string(body), "the-devices-own") {
		t.Fatalf("POST /devices with a secret: %d %s", status, body)
	}
	if _, err := r.srv.Store().CheckDeviceSecret(t.Context(), "wt-1", "the-devices-own"); err != nil {
		t.Error(err)
	}
}

func TestDeviceValidationNamesTheField(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	r.addDevice("pump-1")
	for _, c := range []struct {
		body        any
		status      int
		code, field string
	}{
		{map[string]any{"id": "Bad_Name!"}, 400, "invalid", "id"},
		{map[string]any{}, 400, "invalid", "id"},
		{map[string]any{"id": "p2", "groups": []string{"nosuch"}}, 400, "invalid", "groups"},
		{map[string]any{"id": "p2", "ports": []int{0}}, 400, "invalid", "ports"},
		{map[string]any{"id": "p2", "ports": []int{70000}}, 400, "invalid", "ports"},
		{map[string]any{"id": "p2", "ports": "80"}, 400, "invalid", "ports"},
		{map[string]any{"id": "p2", "colour": "red"}, 400, "invalid", "colour"},
		{map[string]any{"id": 17}, 400, "invalid", "id"},
		{map[string]any{"id": "pump-1"}, 409, "conflict", ""},
		{`{"id": "p2"`, 400, "bad_request", ""},
		{`{"id": "p2"} {"id": "p3"}`, 400, "bad_request", ""},
		{`[]`, 400, "invalid", ""},
	} {
		status, body, _ := r.call(http.MethodPost, api.Prefix+"/devices", r.adminToken, c.body)
		if status != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) ||
			(c.field != "" && !strings.Contains(string(body), `"field":"`+c.field+`"`)) {
			t.Errorf("POST /devices %v: %d %s, want %d %s field %q", c.body, status, body, c.status, c.code, c.field)
		}
	}
	r.mustFail(http.StatusBadRequest, "invalid", "httpTLS", http.MethodPatch, api.Prefix+"/devices/pump-1", r.adminToken, map[string]any{"httpTLS": "yes"})
	r.mustFail(http.StatusBadRequest, "bad_request", "", http.MethodPatch, api.Prefix+"/devices/pump-1", r.adminToken, map[string]any{})
	r.mustFail(http.StatusBadRequest, "invalid", "limit", http.MethodGet, api.Prefix+"/devices?limit=0", r.adminToken, nil)
	r.mustFail(http.StatusBadRequest, "invalid", "online", http.MethodGet, api.Prefix+"/devices?online=maybe", r.adminToken, nil)
	r.mustFail(http.StatusBadRequest, "invalid", "cursor", http.MethodGet, api.Prefix+"/devices?cursor=bm9wZQ", r.adminToken, nil)
}

func TestBodiesAreBoundedAndJSON(t *testing.T) {
	r := newRig(t)
	big := `{"id": "p", "name": "` + strings.Repeat("x", 100<<10) + `"}`
	r.mustFail(http.StatusRequestEntityTooLarge, "payload_too_large", "", http.MethodPost, api.Prefix+"/devices", r.adminToken, big)
	status, body, _ := r.call(http.MethodPost, api.Prefix+"/devices", r.adminToken, `{"id":"p"}`, "Content-Type", "text/plain")
	if status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d %s", status, body)
	}
}

func TestUserSeesOnlyTheDevicesOfTheirGroups(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	r.addGroup("plant-b")
	r.addUser("alice", store.RoleUser, "plant-a")
	alice := r.token("alice")
	secret := r.addDevice("pump-a", "plant-a")
	other := r.addDevice("pump-b", "plant-b")
	port := r.startAgent("pump-b", other)
	r.startAgent("pump-a", secret)

	var p devicePage
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices", alice, nil, &p)
	if len(p.Items) != 1 || p.Items[0].ID != "pump-a" || !p.Items[0].Status.Online || p.Items[0].Status.AgentKind == "" {
		t.Errorf("alice's devices: %+v", p.Items)
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices/pump-a", alice, nil, nil)
	// Another group's device does not exist for her: 404, not 403.
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/devices/pump-b", alice, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/devices/pump-b/streams", alice, nil)
	// Nor does it show in a filtered listing.
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices?group=plant-b", alice, nil, &p)
	if len(p.Items) != 0 {
		t.Errorf("alice's devices in plant-b: %+v", p.Items)
	}
	// root's stream to pump-b is not hers to see, and hers not root's to hide.
	r.connect("root", r.adminToken, "pump-b", port)
	var streams struct{ Items []struct{ User string } }
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices/pump-b/streams", r.adminToken, nil, &streams)
	if len(streams.Items) != 1 || streams.Items[0].User != "root" {
		t.Errorf("root sees pump-b's streams: %+v", streams.Items)
	}
}

func TestUserCannotManageDevices(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	r.addUser("alice", store.RoleUser, "plant-a")
	alice := r.token("alice")
	r.addDevice("pump-a", "plant-a")
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/devices", map[string]any{"id": "pump-x", "groups": []string{"plant-a"}}},
		{http.MethodPatch, "/devices/pump-a", map[string]any{"name": "mine"}},
		{http.MethodDelete, "/devices/pump-a", nil},
		{http.MethodPost, "/devices/pump-a/rotate-secret", nil},
		{http.MethodPost, "/devices/pump-a/disable", nil},
		{http.MethodPost, "/devices/pump-a/enable", nil},
		{http.MethodDelete, "/devices/pump-a/streams/0000000000000000", nil},
		{http.MethodDelete, "/devices/pump-a/ssh-host-key", nil},
	} {
		r.mustFail(http.StatusForbidden, "forbidden", "", c.method, api.Prefix+c.path, alice, c.body)
	}
	d, err := r.srv.Store().Device("pump-a")
	if err != nil || d.Name != "" || d.Disabled {
		t.Errorf("pump-a after alice's attempts: %+v %v", d, err)
	}
}

func TestAdminChangesDisablesRotatesAndRemovesADevice(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	secret := r.addDevice("pump-17")
	r.startAgent("pump-17", secret)

	var d device
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/devices/pump-17", r.adminToken,
		map[string]any{"name": "Pump 17", "groups": []string{"plant-a"}, "httpPort": 8080, "httpTLS": true}, &d)
	if d.Name != "Pump 17" || !slices.Equal(d.Groups, []string{"plant-a"}) || d.HTTPPort != 8080 || !d.HTTPTLS || d.Ports == nil {
		t.Errorf("after PATCH: %+v", d)
	}
	var p provisioned
	r.must(http.StatusOK, http.MethodPost, api.Prefix+"/devices/pump-17/rotate-secret", r.adminToken, nil, &p)
	if p.Secret == "" || p.Secret == secret || !p.Disconnected {
		t.Errorf("rotate: %+v", p)
	}
	if _, err := r.srv.Store().CheckDeviceSecret(t.Context(), "pump-17", secret); err == nil {
		t.Error("the old secret still works")
	}
	r.must(http.StatusOK, http.MethodPost, api.Prefix+"/devices/pump-17/disable", r.adminToken, nil, &d)
	if !d.Disabled {
		t.Errorf("after disable: %+v", d)
	}
	r.must(http.StatusOK, http.MethodPost, api.Prefix+"/devices/pump-17/enable", r.adminToken, nil, &d)
	if d.Disabled {
		t.Errorf("after enable: %+v", d)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/devices/pump-17", r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodGet, api.Prefix+"/devices/pump-17", r.adminToken, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/devices/pump-17", r.adminToken, nil)
	kinds := []string{}
	events, _ := r.srv.Store().AuditEvents(store.AuditFilter{Kind: "device."})
	for _, e := range events {
		if e.Actor == "root" {
			kinds = append(kinds, e.Kind)
		}
	}
	want := []string{store.AuditDeviceSet, store.AuditRotate, store.AuditDisable, store.AuditEnable, store.AuditDeviceRm}
	if !slices.Equal(kinds, want) {
		t.Errorf("audited %v, want %v", kinds, want)
	}
}

// Pages are positions in id order: a device added between pages is seen
// once if its id is after the cursor and not at all otherwise, and none is
// seen twice or skipped.
func TestDevicePagesReturnEveryDeviceOnceWhileDevicesAreAdded(t *testing.T) {
	r := newRig(t)
	for i := range 25 {
		r.addDevice(fmt.Sprintf("dev-%03d", i*2))
	}
	seen := map[string]int{}
	cursor := ""
	for pages := 0; ; pages++ {
		var p devicePage
		r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices?limit=7&cursor="+cursor, r.adminToken, nil, &p)
		for _, d := range p.Items {
			seen[d.ID]++
		}
		// Two more devices between pages: one sorts before everything,
		// one among what is to come.
		r.addDevice(fmt.Sprintf("aaa-%d", pages))
		r.addDevice(fmt.Sprintf("dev-%03d", 2*pages+1))
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	for i := range 25 {
		if id := fmt.Sprintf("dev-%03d", i*2); seen[id] != 1 {
			t.Errorf("%s seen %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
}

func TestDeviceListFiltersByTextGroupAndStatus(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant-a")
	r.addDevice("pump-1", "plant-a")
	r.addDevice("valve-2")
	secret := r.addDevice("pump-3")
	r.startAgent("pump-3", secret)
	if _, _, err := r.srv.Ops().UpdateDevice(t.Context(), opsLocal(), "valve-2", store.DeviceUpdate{Name: ptr("Main PUMP valve")}); err != nil {
		t.Fatal(err)
	}
	for query, want := range map[string][]string{
		"q=pump":                 {"pump-1", "pump-3", "valve-2"},
		"q=PUMP-":                {"pump-1", "pump-3"},
		"group=plant-a":          {"pump-1"},
		"online=true":            {"pump-3"},
		"online=false":           {"pump-1", "valve-2"},
		"q=pump&online=false":    {"pump-1", "valve-2"},
		"q=nothing-of-that-name": {},
	} {
		var p devicePage
		r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices?"+query, r.adminToken, nil, &p)
		got := []string{}
		for _, d := range p.Items {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("?%s: %v, want %v", query, got, want)
		}
	}
}

func TestStreamsAreListedWithLiveBytesAndAnAdminCutsOne(t *testing.T) {
	r := newRig(t)
	secret := r.addDevice("pump-17")
	port := r.startAgent("pump-17", secret)
	conn := r.connect("root", r.adminToken, "pump-17", port)
	msg := strings.Repeat("x", 1000)
	io.WriteString(conn, msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	var streams struct {
		Items []struct {
			ID, User, Client, Via string
			Port                  uint16
			BytesToDevice         int64 `json:"bytesToDevice"`
			BytesFromDevice       int64 `json:"bytesFromDevice"`
		}
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/devices/pump-17/streams", r.adminToken, nil, &streams)
	if len(streams.Items) != 1 {
		t.Fatalf("streams: %+v", streams.Items)
	}
	s := streams.Items[0]
	if s.User != "root" || s.Port != port || s.Client != "127.0.0.1" || s.Via != "connect" || s.BytesToDevice < 1000 || s.BytesFromDevice < 1000 {
		t.Errorf("stream: %+v", s)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/devices/pump-17/streams/"+s.ID, r.adminToken, nil, nil)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Error("the cut stream still reads")
	}
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/devices/pump-17/streams/"+s.ID, r.adminToken, nil)
	events, _ := r.srv.Store().AuditEvents(store.AuditFilter{Kind: store.AuditStreamCut})
	if len(events) != 1 || events[0].Actor != "root" || events[0].User != "root" || events[0].Device != "pump-17" {
		t.Errorf("audit of the cut: %+v", events)
	}
}

func ptr[T any](v T) *T { return &v }

// An admin resets a device's SSH host key: 204 with a key kept or without,
// 404 for an unknown device.
func TestAdminResetsADevicesSSHHostKey(t *testing.T) {
	r := newRig(t)
	r.addDevice("pump-17")
	if _, _, err := r.srv.Store().SetHostKey("pump-17", []byte("key")); err != nil {
		t.Fatal(err)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/devices/pump-17/ssh-host-key", r.adminToken, nil, nil)
	if _, err := r.srv.Store().HostKey("pump-17"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("host key after the reset: %v, want none", err)
	}
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/devices/pump-17/ssh-host-key", r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/devices/pump-99/ssh-host-key", r.adminToken, nil)
}
