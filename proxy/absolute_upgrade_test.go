package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
)

// wsEchoDevice adds pump-17 (group ops) whose web server echoes WebSocket
// messages, and returns its port.
func wsEchoDevice(f *subdomainFixture) uint16 {
	return f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, msg)
		}
	}))
}

// absoluteWebSocket opens a WebSocket to pump-17 with an absolute-form
// request through the proxy, as alice, and returns the connection after the
// 101.
func absoluteWebSocket(t *testing.T, f *subdomainFixture, port uint16) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := tls.Dial("tcp", f.front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	target := fmt.Sprintf("pump-17.localhost:%d", port)
	fmt.Fprintf(conn, "GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		target, target, basic("alice", "alice-pw"))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("absolute-form upgrade: %v %v", resp, err)
	}
	return conn, br
}

// wsEcho sends msg in one masked text frame and reads the echo (a short
// unmasked frame, RFC 6455 §5.2).
func wsEcho(t *testing.T, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(msg)), mask[0], mask[1], mask[2], mask[3]}
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	conn.Write(frame)
	head := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, head); err != nil || string(head[2:]) != msg {
		t.Fatalf("echo of %q: %q %v", msg, head, err)
	}
}

// TestAbsoluteFormWebSocketEndsOnRevocation (issue 15, item 1): a WebSocket
// opened with GET http://device/ws through the proxy used to outlive the
// revocation of its credential (goproxy copied until one side closed). It
// is now a grant like every other stream: Revalidate ends it, and it is
// audited with its bytes.
func TestAbsoluteFormWebSocketEndsOnRevocation(t *testing.T) {
	f := newWTClientFixture(t)
	conn, br := absoluteWebSocket(t, f, wsEchoDevice(f))
	wsEcho(t, conn, br, "one")
	if n := f.p.Open(); n != 1 {
		t.Fatalf("Open() = %d with a WebSocket open; want 1", n)
	}
	f.revoked.Store(true)
	if n := f.p.Revalidate(); n != 1 {
		t.Fatalf("Revalidate ended %d; want 1", n)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("WebSocket still open after revocation: %v", err)
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditRequest || ev.User != "alice" || ev.Client != testClient.String() ||
		!strings.HasPrefix(ev.Reason, "GET /ws 101") || !strings.HasSuffix(ev.Reason, "(closed: access revoked)") ||
		ev.BytesUp == 0 || ev.BytesDown == 0 {
		t.Errorf("audit event %+v", ev)
	}
}

// TestAbsoluteFormWebSocketEndsWithTheProxy: Close ends an absolute-form
// WebSocket and waits for it, as for every other stream.
func TestAbsoluteFormWebSocketEndsWithTheProxy(t *testing.T) {
	f := newWTClientFixture(t)
	conn, br := absoluteWebSocket(t, f, wsEchoDevice(f))
	wsEcho(t, conn, br, "two")
	closed := make(chan struct{})
	go func() { f.p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with an absolute-form WebSocket open")
	}
	if n := f.p.Open(); n != 0 {
		t.Fatalf("Open() = %d after Close", n)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("WebSocket still open after Close: %v", err)
	}
}
