package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// fleet is a stack with one admin, two users in different groups, and device
// dev1 (group plant-a) online with an echo port, a web port and a closed port.
type fleet struct {
	*stack
	echo, web, closed uint16
}

func newFleet(t *testing.T) *fleet {
	s := newStack(t)
	f := &fleet{stack: s, echo: echoServer(t), closed: closedPort(t)}
	f.web = webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "device page %s host=%s auth=%q", r.URL.Path, r.Host, r.Header.Get("Proxy-Authorization"))
	}))
	s.addUser("root", "root-pass", true)
	s.addUser("alice", "alice-pass", false, "plant-a")
	s.addUser("bob", "bob-pass", false, "plant-b")
	secret := s.addDevice(store.Device{ID: "dev1", Groups: []string{"plant-a"}})
	s.addDevice(store.Device{ID: "dev2", Groups: []string{"plant-a"}}) // never online
	s.addDevice(store.Device{ID: "narrow", Groups: []string{"plant-a"}, Ports: []uint16{7}})
	s.startAgent(agent.Config{DeviceID: "dev1", Secret: secret, Ports: []uint16{f.echo, f.web, f.closed}, HTTPPort: f.web})
	return f
}

func TestConnectEchoes64MiBVerifiedByChecksum(t *testing.T) {
	f := newFleet(t)
	conn := f.proxyConn()
	defer conn.Close()
	resp, br := f.connect(conn, basic("alice", "alice-pass"), fmt.Sprintf("dev1.localhost:%d", f.echo))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	const size = 64 << 20
	sent := sha256.New()
	go func() {
		rng := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 256<<10)
		for n := 0; n < size; n += len(buf) {
			rng.Read(buf)
			sent.Write(buf)
			if _, err := conn.Write(buf); err != nil {
				t.Error(err)
				return
			}
		}
		conn.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, br)
	if err != nil || n != size {
		t.Fatalf("echoed %d bytes, err %v", n, err)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatal("checksum mismatch")
	}
}

func TestConnectStatuses(t *testing.T) {
	f := newFleet(t)
	alice := basic("alice", "alice-pass")
	for _, tc := range []struct {
		name   string
		auth   string
		target string
		want   int
		reason string
	}{
		{"no credentials", "", "dev1.localhost:%echo", 407, "proxy authentication required"},
		{"malformed credentials", "Basic !!!notbase64", "dev1.localhost:%echo", 407, ""},
		{"no colon", "Basic " + b64("alice"), "dev1.localhost:%echo", 407, ""},
		{"bearer scheme", "Bearer abc", "dev1.localhost:%echo", 407, ""},
		{"wrong password", basic("alice", "nope"), "dev1.localhost:%echo", 407, ""},
		{"unknown user", basic("mallory", "x"), "dev1.localhost:%echo", 407, ""},
		{"port outside the agent's list", alice, "dev1.localhost:9", 403, "port not allowed"},
		{"port outside the device record's list", alice, "narrow.localhost:22", 403, "port not allowed"},
		{"unknown device", alice, "nosuch.localhost:22", 404, "unknown device"},
		{"group mismatch", basic("bob", "bob-pass"), "dev1.localhost:%echo", 403, "no access"},
		{"offline device", alice, "dev2.localhost:22", 502, "offline"},
		{"refused port", alice, "dev1.localhost:%closed", 502, "refused"},
		{"bare device id", alice, "dev1:%echo", 200, ""},
		{"admin reaches any device", basic("root", "root-pass"), "dev1.localhost:%echo", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := strings.NewReplacer("%echo", fmt.Sprint(f.echo), "%closed", fmt.Sprint(f.closed)).Replace(tc.target)
			conn := f.proxyConn()
			defer conn.Close()
			resp, br := f.connect(conn, tc.auth, target)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 407 && resp.Header.Get("Proxy-Authenticate") == "" {
				t.Fatal("407 without Proxy-Authenticate")
			}
			if tc.want != 200 {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tc.reason) || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 {
					t.Fatalf("reason %q, want one line containing %q", body, tc.reason)
				}
				return
			}
			io.WriteString(conn, "hello")
			buf := make([]byte, 5)
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("echo %q %v", buf, err)
			}
		})
	}
}

func TestNonDeviceHostsAreRefusedWithoutAnyDial(t *testing.T) {
	f := newFleet(t)
	victim := listenCounting(t)
	reflectorPort := f.srv.Addr().(*net.TCPAddr).Port
	alice := basic("alice", "alice-pass")
	targets := []string{
		fmt.Sprintf("127.0.0.1:%d", victim.port()),
		fmt.Sprintf("localhost:%d", victim.port()),
		fmt.Sprintf("[::1]:%d", victim.port()),
		fmt.Sprintf("example.com:%d", victim.port()),
		fmt.Sprintf("dev1.example.com:%d", victim.port()),
		fmt.Sprintf("a.dev1.localhost:%d", victim.port()),
		fmt.Sprintf("localhost:%d", reflectorPort),
		fmt.Sprintf("127.0.0.1:%d", reflectorPort),
	}
	for _, target := range targets {
		conn := f.proxyConn()
		resp, _ := f.connect(conn, alice, target)
		conn.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s: status %d, want 403", target, resp.StatusCode)
		}
	}
	client := f.proxyClient("alice", "alice-pass")
	for _, target := range targets {
		resp, err := client.Get("http://" + target + "/")
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET http://%s/: status %d, want 403", target, resp.StatusCode)
		}
	}
	// Every request has its answer, so a dial the reflector made for one is
	// in the victim's accept queue by now. A connection of our own queues
	// behind them: once the victim has accepted and closed it, it has
	// counted all of them.
	marker, err := net.Dial("tcp", victim.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	marker.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := marker.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the non-device listener did not accept and close a connection: %v", err)
	}
	if n := victim.accepted.Load() - 1; n != 0 {
		t.Fatalf("%d connections reached a non-device listener", n)
	}
}

func TestAbsoluteFormGetReachesDeviceWebPort(t *testing.T) {
	f := newFleet(t)
	client := f.proxyClient("alice", "alice-pass")
	for range 3 { // keep-alive: the same stream serves several requests
		resp, err := client.Get("http://dev1.localhost/status?x=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "device page /status host=dev1.localhost") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if strings.Contains(string(body), `auth="B`) {
			t.Fatalf("Proxy-Authorization reached the device: %q", body)
		}
	}
	if st, _ := f.srv.Hub().Status("dev1"); st.OpenStreams > 1 {
		t.Fatalf("%d streams open after three keep-alive requests", st.OpenStreams)
	}
	for _, tc := range []struct {
		user, pass, url string
		want            int
	}{
		{"alice", "nope", "http://dev1.localhost/", 407},
		{"bob", "bob-pass", "http://dev1.localhost/", 403},
		{"alice", "alice-pass", "http://nosuch.localhost/", 404},
		{"alice", "alice-pass", "http://dev2.localhost/", 502},
		{"alice", "alice-pass", fmt.Sprintf("http://dev1.localhost:%d/", f.closed), 502},
		{"alice", "alice-pass", "http://dev1.localhost:9/", 403},
	} {
		resp, err := f.proxyClient(tc.user, tc.pass).Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s as %s: status %d, want %d", tc.url, tc.user, resp.StatusCode, tc.want)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
