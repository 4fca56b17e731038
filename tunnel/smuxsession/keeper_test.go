package smuxsession_test

import (
	"errors"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

const (
	testInterval = 100 * time.Millisecond
	testTimeout  = time.Second // not shorter: loaded CI machines pause goroutines for hundreds of ms
)

// A peer that sends nothing, not even keep-alives, is closed within the
// timeout (and a tick).
func TestSilentPeerIsClosed(t *testing.T) {
	cfg := serverConfig()
	cfg.Keeper = smuxsession.NewKeeper(testInterval, testTimeout)
	acfg := tunnel.MuxConfig()
	acfg.KeepAliveDisabled = true // the agent falls silent
	start := time.Now()
	l := connect(t, cfg, acfg, echoHandler)
	select {
	case err := <-l.ended:
		if !errors.Is(err, smuxsession.ErrKeepAliveTimeout) {
			t.Fatalf("Run returned %v, want ErrKeepAliveTimeout", err)
		}
	case <-time.After(5 * testTimeout):
		t.Fatal("a silent peer was not closed")
	}
	if d := time.Since(start); d < testTimeout {
		t.Errorf("closed after %v, before the timeout (%v)", d, testTimeout)
	}
}

// An idle agent that sends its keep-alives is never closed, and the
// reflector's NOPs keep the agent, whose own timeout is as short, from
// closing the session either: over many timeout periods, both stay up.
func TestIdleLiveAgentStaysConnected(t *testing.T) {
	cfg := serverConfig()
	cfg.Keeper = smuxsession.NewKeeper(testInterval, testTimeout)
	acfg := tunnel.MuxConfig()
	acfg.KeepAliveInterval, acfg.KeepAliveTimeout = testInterval, testTimeout
	l := connect(t, cfg, acfg, echoHandler)
	time.Sleep(3 * testTimeout)
	if err := l.srv.Err(); err != nil {
		t.Fatalf("the reflector closed an idle, live agent: %v", err)
	}
	if l.agent.IsClosed() {
		t.Fatal("the agent closed the session: it received no keep-alive")
	}
}
