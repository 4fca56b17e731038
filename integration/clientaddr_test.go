package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// forwardedClient is the address a trusted reverse proxy in front of the
// reflector (here: the test, from 127.0.0.1) says the client has.
const forwardedClient = "198.51.100.7"

// TestEveryPathAuditsTheForwardedClientAddress: behind --trusted-proxy,
// CONNECT, absolute-form, a device host, a client tool's WebSocket and an
// agent's upgrade are all logged and audited with the client's address from
// X-Forwarded-For, not the balancer's (CONNECT and the client tools used to
// record the socket's).
func TestEveryPathAuditsTheForwardedClientAddress(t *testing.T) {
	s := newStackConfig(t, server.Config{TrustedProxies: []string{"127.0.0.0/8"}})
	s.addUser("alice", "alice-pass", false, "plant-a")
	tok, _, err := s.srv.Store().CreateToken(store.Token{User: "alice", Name: "addr-test"})
	if err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	web := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{echo, web}, HTTPPort: web})
	port := s.srv.Addr().(*net.TCPAddr).Port
	alice := basic("alice", "alice-pass")

	// CONNECT, a byte echoed.
	conn := s.proxyConn()
	fmt.Fprintf(conn, "CONNECT dev1.localhost:%d HTTP/1.1\r\nHost: dev1.localhost:%d\r\nProxy-Authorization: %s\r\nX-Forwarded-For: %s\r\n\r\n",
		echo, echo, alice, forwardedClient)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	conn.Write([]byte("x"))
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %q %v", b, err)
	}
	conn.Close()

	// Absolute-form.
	conn = s.proxyConn()
	fmt.Fprintf(conn, "GET http://dev1.localhost/ HTTP/1.1\r\nHost: dev1.localhost\r\nProxy-Authorization: %s\r\nX-Forwarded-For: %s\r\nConnection: close\r\n\r\n",
		alice, forwardedClient)
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("absolute-form: %v %v", resp, err)
	}
	conn.Close()

	// A device host, with a bearer token.
	req, _ := http.NewRequest(http.MethodGet, subURL(s.srv.Addr(), "dev1", "/"), nil)
	req.Header.Set(subHeaderAuth, "Bearer "+tok)
	req.Header.Set("X-Forwarded-For", forwardedClient)
	resp, err := subClient(s.srv.Addr().String(), s.pool).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("device host: %v %v", resp, err)
	}
	resp.Body.Close()

	// A macchina.io client tool's WebSocket on the device host.
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, s.srv.Addr().String())
		},
		TLSClientConfig: &tls.Config{RootCAs: s.pool},
		Subprotocols:    []string{"com.appinf.webtunnel.client/1.0"},
	}
	h := http.Header{"Authorization": {alice}, "X-Webtunnel-Remoteport": {strconv.Itoa(int(echo))}, "X-Forwarded-For": {forwardedClient}}
	ws, _, err := d.Dial(fmt.Sprintf("wss://dev1.localhost:%d/", port), h)
	if err != nil {
		t.Fatalf("client tool: %v", err)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("y"))
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "y" {
		t.Fatalf("client tool echo: %q %v", msg, err)
	}
	ws.Close()

	// An agent's upgrade with a wrong secret.
	conn = s.proxyConn()
	fmt.Fprintf(conn, "GET /tunnel/v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: reflector.v1\r\n"+
		"X-Reflector-Ports: 22\r\nAuthorization: %s\r\nX-Forwarded-For: %s\r\n\r\n", basic("dev1", "wrong"), forwardedClient)
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("agent upgrade: %v %v", resp, err)
	}
	conn.Close()

	// An agent that connects: its address as the reflector shows it.
	secret2 := s.addDevice(store.Device{ID: "dev2", Groups: []string{"plant-a"}})
	conn = s.proxyConn()
	defer conn.Close()
	fmt.Fprintf(conn, "GET /tunnel/v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: reflector.v1\r\n"+
		"X-Reflector-Ports: 22\r\nAuthorization: %s\r\nX-Forwarded-For: %s\r\n\r\n", basic("dev2", secret2), forwardedClient)
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("agent upgrade: %v %v", resp, err)
	}
	waitFor(t, func() bool { _, ok := s.srv.Hub().Status("dev2"); return ok })
	if st, _ := s.srv.Hub().Status("dev2"); st.RemoteAddr != forwardedClient {
		t.Errorf("agent shown at %q; want %s", st.RemoteAddr, forwardedClient)
	}

	seen := func(kind, reason string) bool {
		for _, ev := range s.auditEvents(kind) {
			if ev.Client == forwardedClient && (reason == "" || ev.Reason == reason) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ kind, reason, what string }{
		{store.AuditStream, "", "CONNECT"},
		{store.AuditStream, "webtunnel", "client tool"},
		{store.AuditRequest, "GET / 200", "absolute-form and device host"},
		{store.AuditAgent, "", "agent"},
	} {
		waitFor(t, func() bool { return seen(c.kind, c.reason) })
	}
	var requests int
	for _, ev := range s.auditEvents(store.AuditRequest) {
		if ev.Client != forwardedClient {
			t.Errorf("request audited with client %q: %+v", ev.Client, ev)
		}
		requests++
	}
	if requests != 2 {
		t.Errorf("%d requests audited; want absolute-form and device host", requests)
	}
	for _, ev := range s.auditEvents(store.AuditStream) {
		if ev.Client != forwardedClient {
			t.Errorf("stream audited with client %q: %+v", ev.Client, ev)
		}
	}
}
