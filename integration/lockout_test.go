package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// TestParallelWrongProxyPasswordsAreCheckedAtMostFiveTimes is the attack of
// issue 15 (item 2) over real sockets: 100 CONNECTs with a wrong password
// for one user, sent at once on connections opened beforehand. The lockout
// used to be looked at before the argon2id check and counted after it, so
// all 100 were checked. Now at most 5 are (407), and the rest get 429.
func TestParallelWrongProxyPasswordsAreCheckedAtMostFiveTimes(t *testing.T) {
	const n = 100
	s := newStack(t)
	s.addUser("alice", "alice-pass", false, "plant-a")
	s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = s.proxyConn()
		defer conns[i].Close()
	}

	wrong := basic("alice", "guess")
	statuses := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() {
			<-start
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "CONNECT dev1.localhost:22 HTTP/1.1\r\nHost: dev1.localhost:22\r\nProxy-Authorization: %s\r\n\r\n", wrong)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				errs[i] = fmt.Errorf("429 without Retry-After")
			}
		})
	}
	close(start)
	wg.Wait()

	count := map[int]int{}
	for i, st := range statuses {
		if errs[i] != nil {
			t.Fatalf("CONNECT %d: %v", i, errs[i])
		}
		count[st]++
	}
	t.Logf("statuses: %v", count)
	if count[http.StatusProxyAuthRequired] > 5 || count[http.StatusProxyAuthRequired]+count[http.StatusTooManyRequests] != n {
		t.Errorf("statuses %v; want at most 5 × 407 (checked), the rest 429", count)
	}
	var failed int
	for _, ev := range s.auditEvents(store.AuditLogin) {
		if !ev.OK && ev.User == "alice" {
			failed++
		}
	}
	if failed > 5 || failed != count[http.StatusProxyAuthRequired] {
		t.Errorf("%d failed logins audited for %v; want at most 5, one per 407", failed, count)
	}
	// The right password waits for the lockout too.
	conn := s.proxyConn()
	defer conn.Close()
	if resp, _ := s.connect(conn, basic("alice", "alice-pass"), "dev1.localhost:22"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("right password after the attack: %d, want 429", resp.StatusCode)
	}
}

// TestDeviceGuessedFromOneAddressConnectsFromAnother is the attack of issue
// 15 (item 3) through a real tunnel upgrade: device ids are public, and five
// wrong secrets from one address used to keep the device offline (429 for
// a minute, doubling to an hour) wherever it connected from. Two client
// addresses come from loopback through X-Forwarded-For and --trusted-proxy.
func TestDeviceGuessedFromOneAddressConnectsFromAnother(t *testing.T) {
	const attacker, device = "192.0.2.66", "198.51.100.7"
	for _, tt := range []struct {
		name string
		// add makes the device and returns its secret.
		add func(s *stack) string
		// rightFromAttacker is the status of the right secret sent from
		// the attacker's address after the guesses.
		rightFromAttacker int
	}{
		{"generated secret, checked from anywhere", func(s *stack) string {
			return s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
		}, http.StatusSwitchingProtocols},
		{"adopted secret, locked per address", func(s *stack) string {
			s.addGroups("plant-a")
			if err := s.srv.Store().AddDeviceWithSecret(store.Device{ID: "dev1", Groups: []string{"plant-a"}}, "plc-pass"); err != nil {
				t.Fatal(err)
			}
			return "plc-pass"
		}, http.StatusTooManyRequests},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStackConfig(t, server.Config{TrustedProxies: []string{"127.0.0.0/8"}})
			secret := tt.add(s)
			for i := range 5 {
				if st := s.agentUpgradeFrom(attacker, "dev1", "guess"); st != http.StatusUnauthorized {
					t.Fatalf("guess %d: status %d, want 401", i+1, st)
				}
			}
			if st := s.agentUpgradeFrom(attacker, "dev1", "guess"); st != http.StatusTooManyRequests {
				t.Fatalf("sixth guess: status %d, want 429", st)
			}
			if st := s.agentUpgradeFrom(attacker, "dev1", secret); st != tt.rightFromAttacker {
				t.Fatalf("right secret from the guessing address: status %d, want %d", st, tt.rightFromAttacker)
			}
			if st := s.agentUpgradeFrom(device, "dev1", secret); st != http.StatusSwitchingProtocols {
				t.Fatalf("right secret from the device's address: status %d, want 101", st)
			}
			waitFor(t, func() bool { st, ok := s.srv.Hub().Status("dev1"); return ok && st.RemoteAddr == device })
		})
	}
}

// agentUpgradeFrom sends an agent's upgrade request as a trusted reverse
// proxy would for a client at addr (X-Forwarded-For), and returns the
// status. The connection stays open until the test ends: after a 101 it is
// the device's tunnel.
func (s *stack) agentUpgradeFrom(addr, device, secret string) int {
	s.t.Helper()
	conn := s.proxyConn()
	s.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /tunnel/v1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: reflector.v1\r\n"+
		"X-Reflector-Ports: 22\r\nAuthorization: %s\r\nX-Forwarded-For: %s\r\n\r\n", basic(device, secret), addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode
}
