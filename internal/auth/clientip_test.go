package auth

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTrusted(t *testing.T) {
	got, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32", "2001:db8::1", "172.16.1.2/12", "::ffff:198.51.100.0/120", "fe80::1%eth0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "2001:db8::1/128", "172.16.0.0/12", "198.51.100.0/24", "fe80::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	if got, err := ParseTrustedProxies(nil); err != nil || got != nil {
		t.Errorf("ParseTrustedProxies(nil) = %v, %v", got, err)
	}
}

func TestParseTrustedRejectsGarbage(t *testing.T) {
	for _, s := range []string{"", "proxy.example", "10.0.0.0/33", "10.0.0/8", "1.2.3.4:80", "::1/129", "10.0.0.0/8,10.1.0.0/16"} {
		if _, err := ParseTrustedProxies([]string{"10.0.0.0/8", s}); err == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil error", s)
		} else if !strings.Contains(err.Error(), "trusted proxy") {
			t.Errorf("ParseTrustedProxies(%q): %v does not name the flag", s, err)
		}
	}
}

func mustTrusted(t *testing.T, cidrs ...string) ClientResolver {
	t.Helper()
	p, err := ParseTrustedProxies(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return ClientResolver{Trusted: p}
}

func request(remote string, xff ...string) *http.Request {
	req := &http.Request{RemoteAddr: remote, Header: http.Header{}}
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	return req
}

func TestAddr(t *testing.T) {
	r := mustTrusted(t, "10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10")
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for the invalid Addr
	}{
		{"no proxy", "198.51.100.1:4711", nil, "198.51.100.1"},
		{"untrusted socket ignores XFF", "198.51.100.1:4711", []string{"203.0.113.5"}, "198.51.100.1"},
		{"untrusted socket ignores spoofed trusted XFF", "198.51.100.1:4711", []string{"10.0.0.1"}, "198.51.100.1"},
		{"trusted proxy", "10.0.0.1:4711", []string{"203.0.113.5"}, "203.0.113.5"},
		{"trusted proxy without XFF", "10.0.0.1:4711", nil, "10.0.0.1"},
		{"chain of trusted proxies", "10.0.0.1:4711", []string{"203.0.113.5, 192.0.2.10, 10.9.9.9"}, "203.0.113.5"},
		{"client-sent entries left of the first untrusted are ignored", "10.0.0.1:4711", []string{"1.1.1.1, 203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"spoofed entry left of the real client", "10.0.0.1:4711", []string{"10.3.3.3, 203.0.113.5"}, "203.0.113.5"},
		{"all trusted", "10.0.0.1:4711", []string{"10.1.1.1, 10.2.2.2"}, "10.0.0.1"},
		{"multiple header lines, last first", "10.0.0.1:4711", []string{"1.1.1.1", "203.0.113.5, 10.1.1.1", "10.2.2.2"}, "203.0.113.5"},
		{"untrusted in the last line wins", "10.0.0.1:4711", []string{"203.0.113.5", "203.0.113.6"}, "203.0.113.6"},
		{"spaces and tabs", "10.0.0.1:4711", []string{" 203.0.113.5 ,\t10.1.1.1 "}, "203.0.113.5"},
		{"garbage", "10.0.0.1:4711", []string{"not-an-ip"}, "10.0.0.1"},
		{"unknown", "10.0.0.1:4711", []string{"unknown"}, "10.0.0.1"},
		{"garbage behind trusted hop stops the walk", "10.0.0.1:4711", []string{"203.0.113.5, garbage, 10.1.1.1"}, "10.0.0.1"},
		{"empty entry stops the walk", "10.0.0.1:4711", []string{"203.0.113.5,,10.1.1.1"}, "10.0.0.1"},
		{"trailing comma", "10.0.0.1:4711", []string{"203.0.113.5,"}, "10.0.0.1"},
		{"empty header line", "10.0.0.1:4711", []string{""}, "10.0.0.1"},
		{"garbage left of the client is never read", "10.0.0.1:4711", []string{"garbage, 203.0.113.5"}, "203.0.113.5"},
		{"entry with port", "10.0.0.1:4711", []string{"203.0.113.5:1234"}, "203.0.113.5"},
		{"IPv6 socket untrusted", "[2001:db8::1]:4711", []string{"203.0.113.5"}, "2001:db8::1"},
		{"IPv6 trusted proxy", "[2001:db8:ffff::1]:4711", []string{"2001:db8:1::5"}, "2001:db8:1::5"},
		{"IPv6 entry in brackets", "[2001:db8:ffff::1]:4711", []string{"[2001:db8:1::5]"}, "2001:db8:1::5"},
		{"IPv6 entry with port", "[2001:db8:ffff::1]:4711", []string{"[2001:db8:1::5]:80"}, "2001:db8:1::5"},
		{"IPv6 chain", "[2001:db8:ffff::1]:4711", []string{"2001:db8:1::5, 2001:db8:ffff::2"}, "2001:db8:1::5"},
		{"IPv6 zone dropped", "[fe80::1%eth0]:4711", nil, "fe80::1"},
		{"mapped socket is unmapped and trusted", "[::ffff:10.0.0.1]:4711", []string{"203.0.113.5"}, "203.0.113.5"},
		{"mapped socket untrusted", "[::ffff:198.51.100.1]:4711", nil, "198.51.100.1"},
		{"mapped entry is unmapped", "10.0.0.1:4711", []string{"::ffff:203.0.113.5"}, "203.0.113.5"},
		{"mapped trusted entry is skipped", "10.0.0.1:4711", []string{"203.0.113.5, ::ffff:10.1.1.1"}, "203.0.113.5"},
		{"no port", "198.51.100.1", nil, ""},
		{"no port, trusted", "10.0.0.1", []string{"203.0.113.5"}, ""},
		{"empty", "", nil, ""},
		{"name", "proxy.example:80", nil, ""},
		{"unix socket", "@", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Addr(request(tt.remote, tt.xff...))
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got != want {
				t.Errorf("Addr = %v, want %v", got, want)
			}
		})
	}
}

func TestZeroResolverUsesSocket(t *testing.T) {
	var r ClientResolver
	if got := r.Addr(request("10.0.0.1:1", "203.0.113.5")); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("Addr = %v, want the socket's", got)
	}
}

func TestAddrDoesNotAllocate(t *testing.T) {
	r := mustTrusted(t, "10.0.0.0/8")
	req := request("10.0.0.1:4711", "203.0.113.5, 10.1.1.1, 10.2.2.2")
	if n := testing.AllocsPerRun(100, func() { r.Addr(req) }); n != 0 {
		t.Errorf("%v allocations per Addr, want 0", n)
	}
}

func FuzzAddr(f *testing.F) {
	f.Add("10.0.0.1:4711", "203.0.113.5, 10.1.1.1")
	f.Add("[::ffff:10.0.0.1]:1", "[2001:db8::1]:80,,")
	f.Add("10.0.0.1", "garbage")
	r := ClientResolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := r.Addr(request(remote, xff))
		if !got.IsValid() {
			return
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Errorf("Addr = %v, want unmapped and without zone", got)
		}
		// The answer is the socket's address or a header entry, and from
		// an untrusted socket it is always the socket's.
		ap, err := netip.ParseAddrPort(remote)
		if err != nil {
			t.Fatalf("valid Addr %v from unparsable RemoteAddr %q", got, remote)
		}
		socket := ap.Addr().Unmap().WithZone("")
		if !r.trusted(socket) && got != socket {
			t.Errorf("untrusted socket %v gave %v", socket, got)
		}
	})
}
