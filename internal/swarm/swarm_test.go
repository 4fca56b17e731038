package swarm

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestAgentsDialFromTheirOwnLoopbackAddress is what keeps the reflector's
// per-address limit from refusing the swarm: a listener on 127.0.0.1 sees
// each agent's connection come from that agent's address.
func TestAgentsDialFromTheirOwnLoopbackAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := map[netip.Addr]bool{}
	for _, i := range []int{0, 1, 253, 254, 254 * 254, 20000} {
		local := loopback(i)
		if b := local.As4(); b[0] != 127 || b[1] == 0 || b[2] == 0 || b[3] == 0 || b[3] == 255 {
			t.Errorf("agent %d: address %s", i, local)
		}
		if seen[local] {
			t.Errorf("agent %d: address %s given twice", i, local)
		}
		seen[local] = true
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("agent %d: dial from %s: %v", i, local, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != local {
			t.Errorf("agent %d: listener sees %s, want %s", i, got, local)
		}
		c.Close()
		s.Close()
	}
}

// TestFleetCountsAReconnectOnlyAfterTheRestart: after a SIGKILL an agent
// may not yet have noticed its tunnel is gone; it counts as back only
// once it connected again.
func TestFleetCountsAReconnectOnlyAfterTheRestart(t *testing.T) {
	f := newFleet(2)
	logs := []*slog.Logger{slog.New(agentLog{f: f, i: 0}), slog.New(agentLog{f: f, i: 1})}
	for _, l := range logs {
		l.With("device", "d").Info("connected", "reflector", "wss://x")
	}
	if !f.all() {
		t.Fatal("both connected, not all counted")
	}
	f.newEpoch()
	if f.all() {
		t.Fatal("all counted right after the restart")
	}
	logs[0].Warn("disconnected", "err", "EOF", "connected_for", time.Second)
	logs[0].Info("connecting", "reflector", "wss://x", "retry_in", time.Second)
	logs[0].Warn("cannot connect", "err", errors.New("dial: refused"), "retry_in", time.Second)
	logs[0].Debug("connect failed", "err", errors.New("dial: refused"), "retry_in", time.Second)
	logs[0].Warn("device credentials refused (401); waiting", "retry_in", time.Minute)
	logs[0].Info("connected", "reflector", "wss://x")
	if f.all() {
		t.Fatal("agent 1 has not reconnected, yet all counted")
	}
	logs[1].Warn("disconnected", "err", "EOF")
	logs[1].Info("connected")
	if !f.all() {
		t.Fatalf("both reconnected, not all counted: %d now, %d since the restart", f.n.Load(), f.epochN.Load())
	}
	if got := f.failures.Load(); got != 3 {
		t.Errorf("%d failed attempts counted, want 3", got)
	}
	if got := f.drops.Load(); got != 2 {
		t.Errorf("%d drops counted, want 2", got)
	}
}
