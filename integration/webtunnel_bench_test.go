package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/control"
	"github.com/reflector-dev/reflector/store"
)

// The real WebTunnelAgent (issue 9) measured against our own agent in the
// same run, and its reconnection after a reflector restart. Run:
//
//	go test ./integration -run '^$' -bench 'BenchmarkWebTunnel$' -benchtime 2s -count 3
//	go test ./integration -run '^$' -bench WebTunnelIdleMemory -benchtime 1x -count 3
//	go test ./integration -run WebTunnelAgentBackAfterReflectorRestart -v

// BenchmarkWebTunnel compares, in one run and on the same device services,
// a device behind our agent and one behind the real WebTunnelAgent, both
// reached with CONNECT over TLS through the in-process reflector, and the
// services dialled directly.
func BenchmarkWebTunnel(b *testing.B) {
	dev := newBenchDevice(b)
	s := newStack(b)
	s.addUser("bench", "bench-pass", true)
	secret := s.addDevice(store.Device{ID: "ours"})
	s.startAgent(agent.Config{DeviceID: "ours", Secret: secret, Ports: []uint16{dev.source, dev.sink, dev.echo}})
	if err := s.srv.Store().AddDeviceWithSecret(store.Device{ID: "wt"}, "s3cret"); err != nil {
		b.Fatal(err)
	}
	out := startWTAgent(b, wtAgentProperties(s.srv.Addr().String(), "wt", "s3cret", dev.source, dev.sink, dev.echo))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := s.srv.Hub().Status("wt"); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("WebTunnelAgent not connected within 20 s; its output:\n%s", out())
		}
		time.Sleep(20 * time.Millisecond)
	}

	auth := basic("bench", "bench-pass")
	tlsConf := &tls.Config{RootCAs: s.pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	via := func(device string) func(b *testing.B, port uint16) net.Conn {
		return func(b *testing.B, port uint16) net.Conn {
			c, err := tls.Dial("tcp", s.srv.Addr().String(), tlsConf)
			if err != nil {
				b.Fatal(err)
			}
			target := fmt.Sprintf("%s.localhost:%d", device, port)
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
			br := bufio.NewReaderSize(c, 64)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("CONNECT %s: %v %v", target, resp, err)
			}
			if br.Buffered() > 0 {
				return &bufferedConn{Conn: c, r: br}
			}
			return c
		}
	}
	paths := []benchPath{
		{"direct", func(b *testing.B, port uint16) net.Conn {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"our-agent", via("ours")},
		{"webtunnel-agent", via("wt")},
	}

	b.Run("download", func(b *testing.B) {
		for _, p := range paths {
			b.Run(p.name, func(b *testing.B) {
				benchDownload(b, p.dial(b, dev.source))
			})
		}
	})
	b.Run("upload", func(b *testing.B) {
		for _, p := range paths {
			b.Run(p.name, func(b *testing.B) {
				benchUpload(b, p.dial(b, dev.sink))
			})
		}
	})
	b.Run("echo64", func(b *testing.B) {
		for _, p := range paths {
			b.Run(p.name, func(b *testing.B) {
				c := p.dial(b, dev.echo)
				defer c.Close()
				msg := make([]byte, 64)
				got := make([]byte, 64)
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					start := time.Now()
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, got); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
				reportPercentiles(b, lat)
			})
		}
	})
}

// wtGroup is the group of the WebTunnelAgent devices added to a real
// `reflector serve`.
const wtGroup = "wt"

// wtImport adds devices ids with password to the reflector's data dir with
// `reflector device import`, in group wtGroup.
func wtImport(tb testing.TB, data, password string, ids ...string) {
	tb.Helper()
	var out bytes.Buffer
	if code := control.Main(context.Background(), data, []string{"group", "add", wtGroup}, nil, &out, &out, nil); code != 0 {
		tb.Fatalf("group add: %s", out.String())
	}
	var csv strings.Builder
	csv.WriteString("id,password,group,name\n")
	for _, id := range ids {
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", id, password, wtGroup, id)
	}
	file := filepath.Join(tb.TempDir(), "devices.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	out.Reset()
	if code := control.Main(context.Background(), data, []string{"device", "import", file}, nil, &out, &out, nil); code != 0 {
		tb.Fatalf("device import: %s", out.String())
	}
}

// onlineCount is how many devices `reflector device list` shows online.
func onlineCount(data string) int {
	var out bytes.Buffer
	control.Main(context.Background(), data, []string{"device", "list"}, nil, &out, &out, nil)
	return strings.Count(out.String(), "online")
}

// BenchmarkWebTunnelIdleMemory is what a connected, idle WebTunnelAgent
// costs the reflector: the resident memory of a real `reflector serve`
// before and after wtIdleAgents real WebTunnelAgent processes connect. The
// devices get generated secrets: an adopted password is checked with
// argon2id (8 MiB a check), whose garbage would outweigh the tunnels.
func BenchmarkWebTunnelIdleMemory(b *testing.B) {
	const wtIdleAgents = 20
	data := b.TempDir()
	port := freePort(b)
	srv, _ := serveProc(b, data, port, "--log-level", "warn")
	var out bytes.Buffer
	if code := control.Main(context.Background(), data, []string{"group", "add", wtGroup}, nil, &out, &out, nil); code != 0 {
		b.Fatalf("group add: %s", out.String())
	}
	secretRe := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`)
	ids := make([]string, wtIdleAgents)
	secrets := make([]string, wtIdleAgents)
	for i := range ids {
		ids[i] = fmt.Sprintf("wt-idle-%d", i)
		out.Reset()
		if code := control.Main(context.Background(), data, []string{"device", "add", ids[i], "--group", wtGroup}, nil, &out, &out, nil); code != 0 {
			b.Fatalf("device add: %s", out.String())
		}
		secrets[i] = secretRe.FindStringSubmatch(out.String())[1]
	}
	time.Sleep(500 * time.Millisecond)
	before := rssKiB(b, srv.cmd.Process.Pid)

	outputs := make([]func() string, len(ids))
	for i, id := range ids {
		outputs[i] = startWTAgent(b, wtAgentProperties(fmt.Sprintf("127.0.0.1:%d", port), id, secrets[i], 22))
	}
	deadline := time.Now().Add(60 * time.Second)
	for onlineCount(data) != wtIdleAgents {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d agents online after 60 s; first agent's output:\n%s", onlineCount(data), wtIdleAgents, outputs[0]())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let handshake garbage be collected
	after := rssKiB(b, srv.cmd.Process.Pid)
	b.ReportMetric(float64(after-before)/wtIdleAgents, "KiB/agent")
	b.ReportMetric(float64(after)/1024, "MiB-total")
}

// wtReconnectRe is the agent's announcement of its next attempt.
var wtReconnectRe = regexp.MustCompile(`Will reconnect in ([0-9.]+) seconds`)

// TestWebTunnelAgentBackAfterReflectorRestart stops a real `reflector
// serve` (SIGTERM) under a connected WebTunnelAgent, starts it again on the
// same port and data directory, and wants the agent back within the retry
// delay it announced. WebTunnelAgent 2.5.0 has no setting for that delay
// (no webtunnel.* property for it): it logs "Will reconnect in N seconds",
// 1 to 1.5 s after losing a tunnel (seen), doubling with each failed
// attempt (2.4, 4.6, 8.1 s seen against a closed port).
func TestWebTunnelAgentBackAfterReflectorRestart(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	srv, fp := serveProc(t, data, port)
	wtImport(t, data, "s3cret", "wt-restart")
	echo := echoServer(t)
	agentOut := startWTAgent(t, wtAgentProperties(fmt.Sprintf("127.0.0.1:%d", port), "wt-restart", "s3cret", echo))
	srv.waitOutput(`device connected`)
	// WebTunnelAgent 2.5.0 subscribes to its forwarder's "closed" event
	// only after the forwarder is already reading the socket: a tunnel
	// closed within that window is never noticed and the agent stays
	// offline for good (seen once under -race in CI, the stop 0 ms after
	// the connect). Give it a second to settle, as a real restart would.
	time.Sleep(time.Second)

	stoppedAt := len(agentOut())
	srv.stop()
	restarted := time.Now()
	srv2, fp2 := serveProc(t, data, port)
	if fp2 != fp {
		t.Fatalf("certificate changed across restart: %s -> %s", fp, fp2)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(srv2.output(), "device connected") {
		if time.Now().After(deadline) {
			t.Fatalf("agent not back 60 s after the restart; its output:\n%s", agentOut())
		}
		time.Sleep(10 * time.Millisecond)
	}
	back := time.Since(restarted)

	// The delays the agent announced after the reflector went: the one
	// pending when the reflector came back is at most the last of them.
	var delays []float64
	for _, m := range wtReconnectRe.FindAllStringSubmatch(agentOut()[stoppedAt:], -1) {
		d, _ := strconv.ParseFloat(m[1], 64)
		delays = append(delays, d)
	}
	if len(delays) == 0 {
		t.Fatalf("the agent announced no retry; its output:\n%s", agentOut())
	}
	retry := time.Duration(delays[len(delays)-1] * float64(time.Second))
	// When the delay is over the agent first tears down the dead tunnel
	// ("Disconnecting from reflector server.", measured 0.1 to 1.1 s) and
	// only then dials: TCP, TLS, upgrade.
	const slack = 2 * time.Second
	t.Logf("agent back %v after the restart; retry delays announced: %v s", back.Round(time.Millisecond), delays)
	if back > retry+slack {
		t.Fatalf("agent back %v after the restart, its retry delay was %v; its output:\n%s", back, retry, agentOut())
	}

	// And it works: an echo through CONNECT as a user of the group.
	if out, err := reflectorCmd(t, "alice-pass\n", "user", "add", "alice", "--group", wtGroup, "--password-stdin", "--data", data); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	c := connectVia(t, port, "alice", "alice-pass", fmt.Sprintf("wt-restart.localhost:%d", echo))
	defer c.Close()
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
}
