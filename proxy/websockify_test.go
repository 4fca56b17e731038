package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
)

// newVNCFixture is the client tool's fixture whose DeviceAuth also takes
// a device session cookie, "dev=<user>", as a browser sends it.
func newVNCFixture(t *testing.T) *subdomainFixture {
	t.Helper()
	f := newWTClientFixture(t)
	byHeader := f.p.cfg.DeviceAuth
	f.p.cfg.DeviceAuth = func(w http.ResponseWriter, r *http.Request, device string) (store.Credential, bool) {
		if c, err := r.Cookie("dev"); err == nil {
			if u, ok := testUsers[c.Value]; ok {
				return store.Credential{User: u}, true
			}
		}
		return byHeader(w, r, device)
	}
	return f
}

// vncDial opens noVNC's WebSocket to url (wss://host/path?query) through
// the fixture's TLS front, offering subprotocols.
func (f *subdomainFixture) vncDial(url string, hdr http.Header, protos ...string) (*websocket.Conn, *http.Response, error) {
	addr := f.front.Listener.Addr().String()
	d := websocket.Dialer{
		NetDialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			raw, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		},
		Subprotocols:     protos,
		HandshakeTimeout: 5 * time.Second,
	}
	return d.Dial(url, hdr)
}

// browser is what a page of origin sends with the user's device cookie.
func browser(origin, user string) http.Header {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if user != "" {
		h.Set("Cookie", "dev="+user)
	}
	return h
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// echoThrough sends size random bytes, half-closes, and checks they all
// come back before the server's close frame.
func echoThrough(t *testing.T, c *websocket.Conn, size int) {
	t.Helper()
	want := make([]byte, size)
	rand.Read(want)
	go func() {
		for b := want; len(b) > 0; {
			n := min(len(b), 7000)
			if c.WriteMessage(websocket.BinaryMessage, b[:n]) != nil {
				return
			}
			b = b[n:]
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}()
	var got bytes.Buffer
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Fatalf("read after %d bytes: %v", got.Len(), err)
			}
			break
		}
		if mt != websocket.BinaryMessage {
			t.Fatalf("message type %d, want binary", mt)
		}
		got.Write(msg)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("echo differs: %d bytes back of %d", got.Len(), len(want))
	}
}

func TestWebsockifyEchoesOnBothPathsAndIsAuditedAsAStream(t *testing.T) {
	f := newVNCFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	for _, tc := range []struct {
		name, path, origin string
		protos             []string
	}{
		{"macchina.io path, noVNC from the device host", MacchinaWebsockifyPath, "https://pump-17.localhost", []string{"binary"}},
		{"our path, a page of the admin host", WebsockifyPath, "https://localhost", []string{"binary"}},
		{"older client, no subprotocol", WebsockifyPath, "https://pump-17.localhost", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.auditEvents())
			url := "wss://pump-17.localhost" + tc.path + "?port=" + strconv.Itoa(echo)
			c, resp, err := f.vncDial(url, browser(tc.origin, "alice"), tc.protos...)
			if err != nil {
				t.Fatalf("dial: %v (status %d)", err, statusOf(resp))
			}
			defer c.Close()
			if want := strings.Join(tc.protos, ""); c.Subprotocol() != want {
				t.Errorf("subprotocol %q, want %q", c.Subprotocol(), want)
			}
			if s := f.p.Streams("pump-17"); len(s) != 1 || s[0].Via != ViaWebsockify || s[0].Port != uint16(echo) {
				t.Errorf("Streams = %+v", s)
			}
			echoThrough(t, c, 300_000)
			waitUntil(t, func() bool { return len(f.auditEvents()) == before+1 })
			ev := f.auditEvents()[before]
			if ev.Kind != store.AuditStream || ev.User != "alice" || ev.Device != "pump-17" || ev.Port != uint16(echo) ||
				!ev.OK || ev.BytesUp != 300_000 || ev.BytesDown != 300_000 || ev.Reason != "websockify" {
				t.Errorf("audit event %+v", ev)
			}
		})
	}
	if n := f.p.Open(); n != 0 {
		t.Errorf("Open() = %d after all closed", n)
	}
}

// TestWebsockifyRefusesAPageOfAnotherDeviceHost (attack): every device host
// is the same site, so the browser sends the victim's device cookie along
// when a page of another device (or any site) opens the socket; a
// WebSocket is not bound by the same-origin policy. Refused before any
// stream is opened.
func TestWebsockifyRefusesAPageOfAnotherDeviceHost(t *testing.T) {
	f := newVNCFixture(t)
	echo := int(tcpEcho(t))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	url := "wss://pump-17.localhost" + MacchinaWebsockifyPath + "?port=" + strconv.Itoa(echo)
	for _, origin := range []string{
		"https://evil-1.localhost",      // another device's page
		"http://pump-17.localhost",      // another scheme is another origin
		"https://pump-17.localhost:444", // and another port
		"https://localhost.example.org",
		"https://user@pump-17.localhost",
		"null",
	} {
		c, resp, err := f.vncDial(url, browser(origin, "alice"), "binary")
		if c != nil {
			c.Close()
		}
		if statusOf(resp) != http.StatusForbidden {
			t.Errorf("Origin %s: status %d (%v), want 403", origin, statusOf(resp), err)
		}
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d streams opened for refused origins", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused requests audited as streams: %+v", evs)
	}
}

func TestWebsockifyRefusals(t *testing.T) {
	f := newVNCFixture(t)
	echo := strconv.Itoa(int(tcpEcho(t)))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.setDevice(store.Device{ID: "pump-18", Groups: []string{"lab"}})
	f.setDevice(store.Device{ID: "pump-19", Groups: []string{"ops"}, Ports: []uint16{5900}})
	own := "https://pump-17.localhost"
	for _, tc := range []struct {
		name, url string
		hdr       http.Header
		protos    []string
		status    int
	}{
		{"no credentials", "wss://pump-17.localhost/my-devices/websockify?port=" + echo, browser(own, ""), nil, http.StatusUnauthorized},
		{"wrong bearer", "wss://pump-17.localhost/my-devices/websockify?port=" + echo, http.Header{"Authorization": {"Bearer nope"}}, nil, http.StatusUnauthorized},
		{"base64", "wss://pump-17.localhost/my-devices/websockify?port=" + echo, browser(own, "alice"), []string{"base64"}, http.StatusBadRequest},
		{"port 0", "wss://pump-17.localhost/my-devices/websockify?port=0", browser(own, "alice"), nil, http.StatusBadRequest},
		{"port 65536", "wss://pump-17.localhost/my-devices/websockify?port=65536", browser(own, "alice"), nil, http.StatusBadRequest},
		{"no access", "wss://pump-18.localhost/my-devices/websockify?port=" + echo, browser("https://pump-18.localhost", "alice"), nil, http.StatusForbidden},
		{"port not allowed", "wss://pump-19.localhost/.reflector/websockify?port=" + echo, browser("https://pump-19.localhost", "alice"), nil, http.StatusForbidden},
		{"unknown device", "wss://nope-1.localhost/.reflector/websockify", browser("https://nope-1.localhost", "alice"), nil, http.StatusNotFound},
	} {
		c, resp, err := f.vncDial(tc.url, tc.hdr, tc.protos...)
		if c != nil {
			c.Close()
		}
		if statusOf(resp) != tc.status {
			t.Errorf("%s: status %d (%v), want %d", tc.name, statusOf(resp), err, tc.status)
		}
	}
	// Not an upgrade at all.
	resp := f.get("https://pump-17.localhost/.reflector/websockify", "alice")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain GET: %d, want 400", resp.StatusCode)
	}
	if n := f.dials.Load(); n != 0 {
		t.Errorf("%d dials for refused requests", n)
	}
	if evs := f.auditEvents(); len(evs) != 0 {
		t.Errorf("refused requests audited: %+v", evs)
	}
}

func TestWebsockifyDefaultPortIsTheVNCPortProperty(t *testing.T) {
	f := newVNCFixture(t)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	f.mu.Lock()
	f.props["pump-17"] = map[string]string{"vncPort": strconv.Itoa(int(echo))}
	f.mu.Unlock()
	// A program: bearer token, no Origin.
	c, resp, err := f.vncDial("wss://pump-17.localhost"+WebsockifyPath, http.Header{"Authorization": {"Bearer tok-alice"}}, "binary")
	if err != nil {
		t.Fatalf("dial: %v (status %d)", err, statusOf(resp))
	}
	defer c.Close()
	echoThrough(t, c, 10_000)
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.Port != echo {
		t.Errorf("audited port %d, want the vncPort property's %d", ev.Port, echo)
	}
	if p := f.p.vncPort("pump-18"); p != 5900 {
		t.Errorf("without the property: port %d, want 5900", p)
	}
}

func TestWebsockifyEndsOnRevocationAndCut(t *testing.T) {
	f := newVNCFixture(t)
	echo := strconv.Itoa(int(tcpEcho(t)))
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	open := func() *websocket.Conn {
		c, resp, err := f.vncDial("wss://pump-17.localhost/my-devices/websockify?port="+echo, browser("https://pump-17.localhost", "alice"), "binary")
		if err != nil {
			t.Fatalf("dial: %v (status %d)", err, statusOf(resp))
		}
		c.WriteMessage(websocket.BinaryMessage, []byte("RFB"))
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "RFB" {
			t.Fatalf("echo %q %v", msg, err)
		}
		return c
	}
	closed := func(c *websocket.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err == nil {
			t.Fatalf("read after %s succeeded", what)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("still open 5 s after %s", what)
		}
	}

	c := open()
	defer c.Close()
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d, want 1", n)
	}
	closed(c, "revocation")
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; !strings.Contains(ev.Reason, "access revoked") || !strings.HasPrefix(ev.Reason, "websockify") || ev.BytesUp != 3 {
		t.Errorf("audit event %+v", ev)
	}

	f.revoked.Store(false)
	c2 := open()
	defer c2.Close()
	s := f.p.Streams("pump-17")
	if len(s) != 1 {
		t.Fatalf("Streams = %+v", s)
	}
	if _, ok := f.p.CutStream("pump-17", s[0].ID); !ok {
		t.Fatal("CutStream found no stream")
	}
	closed(c2, "CutStream")
	waitUntil(t, func() bool { return len(f.auditEvents()) == 2 })
	if ev := f.auditEvents()[1]; !strings.Contains(ev.Reason, "cut") {
		t.Errorf("audit reason %q", ev.Reason)
	}
}
