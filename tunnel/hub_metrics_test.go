package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xtaci/smux"
)

// TestHubMetricsCountOpensAndBytesByKind: opens are counted by result and
// kind, bytes of open streams count at once and those of a device that
// went stay in its kind's totals.
func TestHubMetricsCountOpensAndBytesByKind(t *testing.T) {
	r := newTestReflector(t)
	sess := r.connectAgent(t, "dev1", "secret-dev1", "7,22", func(st *smux.Stream, req OpenRequest) {
		if req.Port == 22 {
			WriteReply(st, StatusRefused, "connect: connection refused")
			return
		}
		echo(st, req)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.hub.Dial(ctx, "dev1", 7, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	io.ReadFull(c, make([]byte, 5))
	r.hub.Dial(ctx, "dev1", 22, netip.Addr{})
	r.hub.Dial(ctx, "dev1", 8, netip.Addr{})
	r.hub.Dial(ctx, "nope", 7, netip.Addr{})

	kinds, offline := r.hub.Metrics()
	if offline != 1 || len(kinds) != 2 || kinds[0].Kind != Subprotocol || kinds[1].Kind != "webtunnel" {
		t.Fatalf("offline %d, kinds %+v", offline, kinds)
	}
	ours := kinds[0]
	want := KindMetrics{Kind: Subprotocol, Connected: 1, Connects: 1, OpenStreams: 1, BytesIn: 5, BytesOut: 5}
	want.Opens[OpenOK], want.Opens[OpenRefused], want.Opens[OpenNotAllowed] = 1, 1, 1
	if ours != want {
		t.Errorf("ours %+v\nwant %+v", ours, want)
	}
	if kinds[1] != (KindMetrics{Kind: "webtunnel"}) {
		t.Errorf("webtunnel %+v", kinds[1])
	}

	c.Close()
	sess.Close()
	waitFor(t, func() bool { _, ok := r.hub.Status("dev1"); return !ok })
	kinds, _ = r.hub.Metrics()
	want.Connected, want.OpenStreams = 0, 0
	if kinds[0] != want {
		t.Errorf("after the device went: %+v\nwant %+v", kinds[0], want)
	}
}

func TestOpenResultNames(t *testing.T) {
	var names []string
	for _, r := range OpenResults() {
		names = append(names, r.String())
	}
	if got := fmt.Sprint(names); got != "[ok not_allowed refused timeout failed busy]" {
		t.Errorf("names %s", got)
	}
}

// TestHubMetricsCountBusyOpens: an open the hub refuses because the device
// has MaxDeviceStreams streams already was counted under no result at all.
func TestHubMetricsCountBusyOpens(t *testing.T) {
	r := newTestReflector(t)
	r.connectAgent(t, "dev1", "secret-dev1", "7", echo)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range MaxDeviceStreams {
		c, err := r.hub.Dial(ctx, "dev1", 7, netip.Addr{})
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		defer c.Close()
	}
	if _, err := r.hub.Dial(ctx, "dev1", 7, netip.Addr{}); !errors.Is(err, ErrDeviceBusy) {
		t.Fatalf("stream %d: %v, want ErrDeviceBusy", MaxDeviceStreams+1, err)
	}
	kinds, _ := r.hub.Metrics()
	ours := kinds[0]
	if ours.Opens[OpenBusy] != 1 || ours.Opens[OpenOK] != MaxDeviceStreams || ours.OpenStreams != MaxDeviceStreams {
		t.Errorf("opens %v (busy %d), open streams %d; want %d ok, 1 busy", ours.Opens, ours.Opens[OpenBusy], ours.OpenStreams, MaxDeviceStreams)
	}
	if !slices.Contains(OpenResults(), OpenBusy) || OpenBusy.String() != "busy" {
		t.Errorf("OpenResults %v: exporters do not see busy", OpenResults())
	}
}
