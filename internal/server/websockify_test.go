package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/admin"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// TestNoVNCBridgeThroughARealAgent: noVNC's WebSocket (issue 19) on a
// device host, through the real server and a real agent to a TCP echo
// standing for the device's VNC server: both paths, the default port from
// the agent's vncPort, a page of another device host refused, and the
// socket closed when the token that opened it is revoked.
func TestNoVNCBridgeThroughARealAgent(t *testing.T) {
	s := runServer(t, Config{})
	st := s.Store()
	addAdopted(t, st, "pump-1")
	if err := st.AddUser("alice", "correct horse battery", store.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	token, rec, err := st.CreateToken(store.Token{User: "alice", Name: "vnc"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	vnc := uint16(ln.Addr().(*net.TCPAddr).Port)
	a, err := agent.New(agent.Config{
		ReflectorURL: "https://" + s.Addr().String(), DeviceID: "pump-1", Secret: "pw-pump-1",
		Ports: []uint16{vnc}, VNCPort: vnc, Fingerprint: s.Fingerprint(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the agent connected", func() bool { _, ok := s.Hub().Status("pump-1"); return ok })

	_, port, _ := net.SplitHostPort(s.Addr().String())
	host := "pump-1.localhost:" + port
	dial := func(path, origin string) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{
			NetDialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}).DialContext(ctx, network, s.Addr().String())
			},
			Subprotocols:     []string{"binary"},
			HandshakeTimeout: 5 * time.Second,
		}
		h := http.Header{admin.AuthHeader: {"Bearer " + token}, "Origin": {origin}}
		return d.Dial("wss://"+host+path, h)
	}

	// A page of another device host: refused before any stream.
	if c, resp, _ := dial("/my-devices/websockify", "https://pump-2.localhost:"+port); c != nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Origin of another device host: %v, want 403", resp)
	}

	for _, path := range []string{"/my-devices/websockify", fmt.Sprintf("/.reflector/websockify?port=%d", vnc)} {
		c, resp, err := dial(path, "https://"+host)
		if err != nil {
			t.Fatalf("%s: %v (%v)", path, err, resp)
		}
		want := make([]byte, 200_000)
		rand.Read(want)
		go func() {
			for b := want; len(b) > 0; b = b[min(len(b), 16384):] {
				if c.WriteMessage(websocket.BinaryMessage, b[:min(len(b), 16384)]) != nil {
					return
				}
			}
		}()
		var got bytes.Buffer
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for got.Len() < len(want) {
			_, msg, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("%s: read after %d bytes: %v", path, got.Len(), err)
			}
			got.Write(msg)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%s: echo differs", path)
		}
		c.Close()
	}

	c, resp, err := dial("/my-devices/websockify", "https://localhost:"+port) // the admin host's page
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	if _, err := st.RevokeToken(rec.ID); err != nil {
		t.Fatal(err)
	}
	s.accessChanged() // what the API does after the revocation
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("read after revocation succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("still open 5 s after the token was revoked")
	}

	waitUntil(t, "three streams audited", func() bool {
		evs, _ := st.AuditEvents(store.AuditFilter{Kind: store.AuditStream, Device: "pump-1"})
		return len(evs) == 3
	})
	evs, _ := st.AuditEvents(store.AuditFilter{Kind: store.AuditStream, Device: "pump-1"})
	for i, ev := range evs {
		if ev.User != "alice" || ev.Port != vnc || !strings.HasPrefix(ev.Reason, "websockify") {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if evs[0].BytesUp != 200_000 || evs[0].BytesDown != 200_000 {
		t.Errorf("bytes %d up, %d down; want 200000 each", evs[0].BytesUp, evs[0].BytesDown)
	}
	if !strings.Contains(evs[2].Reason, "revoked") {
		t.Errorf("last reason %q", evs[2].Reason)
	}
}
