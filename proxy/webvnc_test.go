package proxy

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// webVNCFront serves ServeVNC as the web UI does once it has checked the
// Origin and the admin session: as user, for device and ?port=.
func webVNCFront(t *testing.T, f *subdomainFixture, user, device string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port, _ := strconv.ParseUint(r.URL.Query().Get("port"), 10, 16)
		r = tunnel.WithClientAddr(r, testClient)
		f.p.ServeVNC(w, r, store.Credential{User: testUsers[user]}, device, uint16(port))
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func webVNCDial(t *testing.T, url string) (*websocket.Conn, int) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"binary"}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, statusOf(resp)
	}
	return c, http.StatusSwitchingProtocols
}

func TestWebVNCBridgesListsAndAuditsAsWebVNC(t *testing.T) {
	f := newVNCFixture(t)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.mu.Lock()
	f.props["pump-17"] = map[string]string{"vncPort": strconv.Itoa(int(echo))}
	f.mu.Unlock()
	c, status := webVNCDial(t, webVNCFront(t, f, "alice", "pump-17")) // no port: the vncPort property
	if c == nil {
		t.Fatalf("status %d, want an upgrade", status)
	}
	defer c.Close()
	if s := f.p.Streams("pump-17"); len(s) != 1 || s[0].Via != ViaWebVNC || s[0].Port != echo || s[0].User != "alice" {
		t.Errorf("Streams = %+v", s)
	}
	echoThrough(t, c, 100_000)
	if !slices.ContainsFunc(f.p.ViaMetrics(), func(m ViaMetrics) bool { return m.Via == ViaWebVNC && m.Granted == 1 }) {
		t.Errorf("ViaMetrics %+v lacks one web-vnc stream", f.p.ViaMetrics())
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditStream || ev.User != "alice" || ev.Device != "pump-17" || ev.Port != echo ||
		ev.Reason != "web-vnc" || ev.BytesUp != 100_000 || ev.BytesDown != 100_000 || ev.Client != testClient.String() {
		t.Errorf("audit event %+v", ev)
	}
}

func TestWebVNCChecksAccessAndPortsBeforeAnyStream(t *testing.T) {
	f := newVNCFixture(t)
	echo := strconv.Itoa(int(tcpEcho(t)))
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"lab"}})
	f.setDevice(store.Device{ID: "pump-19", Groups: []string{"ops"}, Ports: []uint16{5900}})
	for _, tc := range []struct {
		name, device, query string
		status              int
	}{
		{"no access", "pump-18", "?port=" + echo, http.StatusForbidden},
		{"port not allowed", "pump-19", "?port=" + echo, http.StatusForbidden},
		{"unknown device", "nope-1", "", http.StatusNotFound},
	} {
		if c, status := webVNCDial(t, webVNCFront(t, f, "alice", tc.device)+tc.query); c != nil || status != tc.status {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
		}
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused requests", n)
	}
}

func TestWebVNCEndsOnRevocation(t *testing.T) {
	f := newVNCFixture(t)
	echo := strconv.Itoa(int(tcpEcho(t)))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c, status := webVNCDial(t, webVNCFront(t, f, "alice", "pump-17")+"?port="+echo)
	if c == nil {
		t.Fatalf("status %d", status)
	}
	defer c.Close()
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("after revocation: %v, want the connection closed", err)
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; !strings.HasPrefix(ev.Reason, "web-vnc: ") || !strings.Contains(ev.Reason, "access revoked") {
		t.Errorf("audit reason %q", ev.Reason)
	}
}
