package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/tunnel"
)

// pipeTunnel opens every stream at once as one end of a pipe: what is
// measured here is the hub's counting, not a wire.
type pipeTunnel struct{ done chan struct{} }

func (p pipeTunnel) Open(context.Context, uint16, string) (net.Conn, error) {
	c, _ := net.Pipe()
	return c, nil
}
func (p pipeTunnel) Close() error          { return nil }
func (p pipeTunnel) Done() <-chan struct{} { return p.done }

// TestMetricsShowBusyOpens: /metrics shows the opens the hub refused with
// ErrDeviceBusy as result="busy".
func TestMetricsShowBusyOpens(t *testing.T) {
	hub := tunnel.NewHub(nil, tunnel.Subprotocol, "webtunnel")
	hub.Register("dev1", pipeTunnel{done: make(chan struct{})}, tunnel.DeviceInfo{Kind: tunnel.Subprotocol, Ports: []uint16{7}})
	for range tunnel.MaxDeviceStreams {
		c, err := hub.Dial(context.Background(), "dev1", 7, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range 2 {
		if _, err := hub.Dial(context.Background(), "dev1", 7, netip.Addr{}); !errors.Is(err, tunnel.ErrDeviceBusy) {
			t.Fatalf("open beyond the cap: %v", err)
		}
	}
	srv := httptest.NewServer(server.MetricsHandler(hub))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `reflector_stream_opens_total{kind="reflector.v1",result="busy"} 2`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}
