package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// The two edges of a tunnel where proxies lose bytes (DESIGN.md, "Libraries,
// as measured"): a client that half-closes must get the device's whole
// reply, and bytes sent right behind the CONNECT, before the 200, must reach
// the device. Both listeners, TLS and plain.

// replyServer reads its client's whole request (to EOF), then answers with
// a reply that names how many bytes it got, padded to 1 MiB.
func replyServer(t *testing.T) uint16 {
	return serveTCP(t, func(c net.Conn) {
		req, _ := io.ReadAll(c)
		head := fmt.Sprintf("got %d bytes: %q\n", len(req), req)
		io.WriteString(c, head+strings.Repeat(".", 1<<20-len(head)))
	})
}

func edgeStack(t *testing.T) (*stack, uint16) {
	s := newStack(t)
	port := replyServer(t)
	s.addUser("alice", "alice-pass", false, "g")
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"g"}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{port}})
	return s, port
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

func listeners(s *stack) map[string]func() halfCloser {
	return map[string]func() halfCloser{
		"tls": func() halfCloser { return s.proxyConn().(halfCloser) },
		"plain": func() halfCloser {
			c, err := net.Dial("tcp", s.srv.ProxyAddr().String())
			if err != nil {
				s.t.Fatal(err)
			}
			return c.(*net.TCPConn)
		},
	}
}

func TestHalfClosedClientGetsWholeReply(t *testing.T) {
	s, port := edgeStack(t)
	for name, dial := range listeners(s) {
		t.Run(name, func(t *testing.T) {
			conn := dial()
			defer conn.Close()
			resp, br := s.connect(conn, basic("alice", "alice-pass"), fmt.Sprintf("dev1.localhost:%d", port))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			io.WriteString(conn, "request")
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(br)
			if err != nil || len(reply) != 1<<20 || !strings.HasPrefix(string(reply), `got 7 bytes: "request"`) {
				t.Fatalf("reply %d bytes (%.40q), err %v", len(reply), reply, err)
			}
		})
	}
}

func TestEarlyBytesBehindConnectReachTheDevice(t *testing.T) {
	s, port := edgeStack(t)
	for name, dial := range listeners(s) {
		t.Run(name, func(t *testing.T) {
			conn := dial()
			defer conn.Close()
			target := fmt.Sprintf("dev1.localhost:%d", port)
			// One write: the request, the early bytes and the half-close all
			// leave before the proxy has answered.
			fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\nearly-bytes", target, target, basic("alice", "alice-pass"))
			conn.CloseWrite()
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			reply, err := io.ReadAll(br)
			if err != nil || !strings.HasPrefix(string(reply), `got 11 bytes: "early-bytes"`) {
				t.Fatalf("reply %.40q, err %v", reply, err)
			}
		})
	}
}
