package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
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

// FuzzResolveHost: whatever host[:port] resolveHost accepts names a device
// (a valid DNS label, not an IP address; the bare domain names none) by the host the
// request gave, with the port the request gave, parsed as a decimal in
// 1..65535 (0 only when there is none); the device's own name resolves to
// the same target; the device-host router (DeviceHost) agrees on the
// device; and the proxy's whole check (authorize) never yields a device
// outside the set the store knows, nor a port the request did not name
// other than the device's HTTP port.
func FuzzResolveHost(f *testing.F) {
	for _, s := range []string{
		"pump-17.localhost:22", "1.2.3.4:5", "[::1]:1", "a:b:c", "x.localhost.",
		"PUMP-17.LOCALHOST.:080", "k:65535", "\u212a.localhost:22", "pump-17.localhost:+22",
		"[pump-17.localhost]:22", "pump-17.localhost.localhost:22", "pump-17:", "0x7f000001",
	} {
		f.Add(s)
	}
	devices := map[string]store.Device{
		"pump-17": {ID: "pump-17", HTTPPort: 8080},
		"k":       {ID: "k"},
	}
	const domain = "localhost"
	p, err := New(Config{
		Domain: domain,
		Authenticate: func(context.Context, netip.Addr, string, string) (store.Credential, error) {
			return store.Credential{User: store.User{Name: "root", Role: store.RoleAdmin}}, nil
		},
		Device: func(_ context.Context, id string) (store.Device, error) {
			if d, ok := devices[id]; ok {
				return d, nil
			}
			return store.Device{}, store.ErrNotFound
		},
		Dial: func(context.Context, string, uint16, netip.Addr) (net.Conn, error) { return nil, errors.New("no dial") },
		DeviceAuth: func(http.ResponseWriter, *http.Request, string) (store.Credential, bool) {
			return store.Credential{}, false
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := resolveHost(s, domain)
		if err != nil {
			if !errors.Is(err, ErrNotDevice) && !errors.Is(err, ErrBadTarget) {
				t.Fatalf("%q: error %v is neither ErrNotDevice nor ErrBadTarget", s, err)
			}
		} else {
			host, portStr, splitErr := net.SplitHostPort(s)
			if splitErr != nil {
				host, portStr = s, ""
			}
			// A device may be called as the domain is ("localhost.localhost"
			// names device "localhost"); the domain itself names none.
			if !tunnel.ValidDeviceID(got.device) || net.ParseIP(got.device) != nil || hostName(host) == domain {
				t.Fatalf("%q resolved to %+v: not a device", s, got)
			}
			if h := hostName(host); h != got.device && h != got.device+"."+domain {
				t.Fatalf("%q resolved to device %q, which is not the host it names", s, got.device)
			}
			wantPort := uint64(0)
			if portStr != "" {
				wantPort, _ = strconv.ParseUint(portStr, 10, 16)
			}
			if uint64(got.port) != wantPort || (portStr != "" && got.port == 0) {
				t.Fatalf("%q resolved to port %d; the request's port is %q", s, got.port, portStr)
			}
			name := got.device + "." + domain
			if got.port != 0 {
				name = net.JoinHostPort(name, strconv.Itoa(int(got.port)))
			}
			if again, err := resolveHost(name, domain); err != nil || again != got {
				t.Fatalf("%q = %+v, but its name %q resolves to %+v, %v", s, got, name, again, err)
			}
			if id, ok := p.DeviceHost(s); ok && id != got.device {
				t.Fatalf("%q: resolveHost names device %q, DeviceHost %q", s, got.device, id)
			}
		}
		r := httptest.NewRequest(http.MethodConnect, "/", nil)
		r.Header.Set("Proxy-Authorization", "Bearer t")
		a, aerr := p.authorize(context.Background(), r, s)
		if aerr != nil {
			return
		}
		if err != nil {
			t.Fatalf("%q: authorize accepted what resolveHost refused (%v)", s, err)
		}
		d, known := devices[a.device.ID]
		if !known || a.device.ID != got.device {
			t.Fatalf("%q: authorize yields device %q, resolved %q, outside the store's set", s, a.device.ID, got.device)
		}
		if a.port != got.port && (got.port != 0 || a.port != p.webServer(d).port) {
			t.Fatalf("%q: authorize yields port %d; resolved %d", s, a.port, got.port)
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
		Authenticate: func(context.Context, netip.Addr, string, string) (store.Credential, error) {
			return store.Credential{}, nil
		},
		Device: func(context.Context, string) (store.Device, error) { return store.Device{}, nil },
		Dial:   func(context.Context, string, uint16, netip.Addr) (net.Conn, error) { return nil, nil },
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
