package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

// validRemotePort is the X-WebTunnel-RemotePort a client tool may send,
// worked out without strconv: blanks around decimal digits naming 1-65535
// (leading zeros allowed).
func validRemotePort(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return false
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return false
		}
	}
	v = strings.TrimLeft(v, "0")
	if v == "" || len(v) > 5 {
		return false
	}
	n := 0
	for _, c := range []byte(v) {
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// FuzzClientToolRemotePort: ServeClientTool reads X-WebTunnel-RemotePort
// before anything else. Whatever the header says, it never panics; a value
// that is not a port 1-65535 is a 400 and nobody is authenticated; a valid
// port goes on to authentication: 401 with a Basic challenge without
// credentials, and with good credentials one Authenticate call and an
// refusal that is neither 400 nor 401 (this device does not exist, so
// nothing is ever dialled).
func FuzzClientToolRemotePort(f *testing.F) {
	for _, s := range []string{
		"22", " 5900 ", "65535", "1", "00022", "0", "65536", "-22", "+22", "0x16", "22,80",
		"2 2", "", "٢٢", "22\x00", "99999999999999999999",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	var calls, dials atomic.Int64
	p, err := New(Config{
		Authenticate: func(_ context.Context, _ netip.Addr, user, secret string) (store.Credential, error) {
			calls.Add(1)
			if user == "alice" && secret == "alice-pw" {
				return store.Credential{User: testUsers["alice"]}, nil
			}
			return store.Credential{}, store.ErrBadCredentials
		},
		Device: func(context.Context, string) (store.Device, error) {
			return store.Device{}, store.ErrNotFound
		},
		Dial: func(context.Context, string, uint16, netip.Addr) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("no dialling here")
		},
		DeviceAuth: func(w http.ResponseWriter, _ *http.Request, _ string) (store.Credential, bool) {
			w.WriteHeader(http.StatusUnauthorized)
			return store.Credential{}, false
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	alice := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-pw"))
	f.Fuzz(func(t *testing.T, port string, withAuth bool) {
		r := httptest.NewRequest(http.MethodPost, "https://pump-17.localhost/", nil)
		r.Header["Connection"] = []string{"Upgrade"}
		r.Header["Upgrade"] = []string{"websocket"}
		r.Header["Sec-Websocket-Version"] = []string{"13"}
		r.Header["Sec-Websocket-Key"] = []string{"dGhlIHNhbXBsZSBub25jZQ=="}
		r.Header["Sec-Websocket-Protocol"] = []string{ClientToolSubprotocol}
		r.Header[http.CanonicalHeaderKey(HeaderRemotePort)] = []string{port}
		if withAuth {
			r.Header["Authorization"] = []string{alice}
		}
		before := calls.Load()
		w := httptest.NewRecorder()
		p.ServeClientTool(w, r, "pump-17")
		called := calls.Load() - before
		if dials.Load() != 0 {
			t.Fatalf("RemotePort %q: a device was dialled", port)
		}
		if !validRemotePort(port) {
			if w.Code != http.StatusBadRequest || called != 0 {
				t.Fatalf("RemotePort %q: status %d after %d authentications, want 400 before any", port, w.Code, called)
			}
			return
		}
		switch {
		case !withAuth && (w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Basic ")):
			t.Fatalf("RemotePort %q without credentials: status %d, WWW-Authenticate %q", port, w.Code, w.Header().Get("WWW-Authenticate"))
		case withAuth && (called != 1 || w.Code == http.StatusBadRequest || w.Code == http.StatusUnauthorized || w.Code < 400):
			t.Fatalf("RemotePort %q with credentials: status %d after %d authentications", port, w.Code, called)
		}
	})
}

var plainHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// FuzzClientToolOrigin: the client tools' upgrader's CheckOrigin never
// panics, lets a request without Origin through (the tools send none),
// compares hosts without regard to ASCII case, never accepts one Origin for
// two different Hosts nor for both TLS and plain http, refuses an http://
// page for a host reached over TLS, lets a page of the device's own host through and
// refuses a page of a longer name that merely starts with it.
func FuzzClientToolOrigin(f *testing.F) {
	for _, s := range [][2]string{
		{"", "pump-17.localhost"},
		{"https://pump-17.localhost", "pump-17.localhost"},
		{"https://PUMP-17.localhost:8443", "pump-17.localhost:8443"},
		{"https://pump-17.localhost.evil.example", "pump-17.localhost"},
		{"https://evil.example", "pump-17.localhost"},
		{"null", "pump-17.localhost"},
		{"https://user@pump-17.localhost", "pump-17.localhost"},
		{"https://%zz", "%zz"},
		{"https://[::1]:443", "[::1]:443"},
	} {
		f.Add(s[0], s[1])
	}
	check := func(origin, host string) bool {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		r.TLS = &tls.ConnectionState{} // the device hosts' listener
		if origin != "" {
			r.Header["Origin"] = []string{origin}
		}
		return sameOriginOrNone(r)
	}
	f.Fuzz(func(t *testing.T, origin, host string) {
		ok := check(origin, host)
		if origin == "" && !ok {
			t.Fatalf("no Origin refused for Host %q", host)
		}
		if ok && origin != "" {
			if upper := asciiUpper(host); !check(origin, upper) {
				t.Fatalf("Origin %q accepted for Host %q but not for %q", origin, host, upper)
			}
			if check(origin, "x"+host) {
				t.Fatalf("Origin %q accepted for both Host %q and %q", origin, host, "x"+host)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil) // plain http
			r.Host = host
			r.Header["Origin"] = []string{origin}
			if sameOriginOrNone(r) {
				t.Fatalf("Origin %q accepted for Host %q both on TLS and plain http", origin, host)
			}
		}
		if plainHost.MatchString(host) {
			if !check("https://"+host, host) {
				t.Fatalf("Host %q: its own Origin refused", host)
			}
			if check("https://"+host+".evil.example", host) {
				t.Fatalf("Host %q: Origin https://%s.evil.example accepted", host, host)
			}
			if check("http://"+host, host) {
				t.Fatalf("Host %q on TLS: Origin http://%s accepted", host, host)
			}
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
