package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestResolveHost(t *testing.T) {
	for _, tc := range []struct {
		in, domain string
		want       target
		err        error
	}{
		{"pump-17.localhost:22", "localhost", target{"pump-17", 22}, nil},
		{"pump-17.localhost", "localhost", target{"pump-17", 0}, nil},
		{"PUMP-17.Localhost.:80", "localhost", target{"pump-17", 80}, nil},
		{"pump-17:22", "localhost", target{"pump-17", 22}, nil},
		{"pump-17.devices.example.com:443", "devices.example.com", target{"pump-17", 443}, nil},
		{"localhost:8443", "localhost", target{}, ErrNotDevice},
		{"devices.example.com:443", "devices.example.com", target{}, ErrNotDevice},
		{"example.com:443", "localhost", target{}, ErrNotDevice},
		{"a.b.localhost:22", "localhost", target{}, ErrNotDevice},
		{"127.0.0.1:22", "localhost", target{}, ErrNotDevice},
		{"[::1]:22", "localhost", target{}, ErrNotDevice},
		{"10.0.0.1", "localhost", target{}, ErrNotDevice},
		{"pump_17.localhost:22", "localhost", target{}, ErrNotDevice},
		{"-pump.localhost:22", "localhost", target{}, ErrNotDevice},
		{"pump.localhost:0", "localhost", target{}, ErrBadTarget},
		{"pump.localhost:70000", "localhost", target{}, ErrBadTarget},
		{"pump.localhost:ssh", "localhost", target{}, ErrBadTarget},
		{"pump.localhost:22:1", "localhost", target{}, ErrBadTarget},
		{"", "localhost", target{}, ErrNotDevice},
		{".localhost", "localhost", target{}, ErrNotDevice},
	} {
		got, err := resolveHost(tc.in, tc.domain)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("resolveHost(%q, %q) = %+v, %v; want %+v, %v", tc.in, tc.domain, got, err, tc.want, tc.err)
		}
	}
}

func FuzzResolveHost(f *testing.F) {
	for _, s := range []string{"pump-17.localhost:22", "1.2.3.4:5", "[::1]:1", "a:b:c", "x.localhost."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := resolveHost(s, "localhost")
		if err == nil && (got.device == "" || got.device == "localhost") {
			t.Fatalf("%q resolved to %+v", s, got)
		}
	})
}

// TestNonASCIINamesAreNoDeviceAliases: Unicode case folding lowered the
// Kelvin sign to "k", which made "\u212a.localhost" an alias of device k.
func TestNonASCIINamesAreNoDeviceAliases(t *testing.T) {
	if tg, err := resolveHost("\u212a.localhost:22", "localhost"); err == nil {
		t.Errorf("resolveHost accepted a non-ASCII name as device %q", tg.device)
	}
	p, err := New(Config{
		Authenticate: func(netip.Addr, string, string) (store.Credential, error) { return store.Credential{}, nil },
		Device:       func(context.Context, string) (store.Device, error) { return store.Device{}, nil },
		Dial:         func(context.Context, string, uint16, netip.Addr) (net.Conn, error) { return nil, nil },
		DeviceAuth: func(http.ResponseWriter, *http.Request, string) (store.Credential, bool) {
			return store.Credential{}, false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := p.DeviceHost("\u212a.localhost:8443"); ok {
		t.Errorf("DeviceHost accepted a non-ASCII name as device %q", id)
	}
}
