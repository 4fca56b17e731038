package proxy

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// validToken reports whether s is an HTTP token, the only header name a
// request can reach the proxy with.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// namedIn reports whether the comma-separated values name token, in any
// ASCII case.
func namedIn(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if asciiUpper(textproto.TrimString(t)) == asciiUpper(token) {
				return true
			}
		}
	}
	return false
}

// FuzzOutboundHeader: whatever request header a client sends (Connection,
// Te, Upgrade and one more header of any name), what outboundHeader lets
// through to the device
//   - has no hop-by-hop header, no proxy credentials, no
//     X-Reflector-Authorization, no forwarding header of the client's, and
//     exactly our X-Forwarded-For (the client, if known), X-Forwarded-Host
//     and X-Forwarded-Proto;
//   - keeps an upgrade only as "Connection: Upgrade" with the client's
//     Upgrade, and only when its Connection named upgrade; Te only as
//     "trailers", and only when it named trailers;
//   - drops a header that Connection names, and keeps any other header
//     byte for byte.
func FuzzOutboundHeader(f *testing.F) {
	f.Add("Upgrade", "", "websocket", "Cookie", "sid=1", true)
	f.Add("keep-alive, Upgrade", "trailers, deflate", "websocket", "X-Custom", "v", true)
	f.Add("close, cookie", "", "", "Cookie", "sid=1", false)
	f.Add(" X-CUSTOM ,,", "gzip", "h2c", "x-custom", "v", true)
	f.Add("upgrade", "TRAILERS", "", "Authorization", "Basic x", true)
	f.Add("Te", "trailers", "websocket", "X-Forwarded-Port", "443", true)
	f.Add("", "", "websocket", "X-Forwarded-For", "6.6.6.6", false)
	f.Add("X-Forwarded-For", "", "", "Forwarded", "for=6.6.6.6", true)
	f.Add("", "", "", "X-Reflector-Authorization", "Bearer rfl_x", true)
	f.Add("Upgrade", "", "", "Proxy-Authorization", "Basic x", true)
	f.Add("\u212Aeep-alive", "", "", "Keep-Alive", "timeout=5", true)
	const host, proto = "pump-17.localhost:8443", "https"
	f.Fuzz(func(t *testing.T, connection, te, upgrade, name, value string, known bool) {
		h := http.Header{
			"Proxy-Authorization":       {"Basic YWxpY2U6cHc="},
			"Proxy-Connection":          {"keep-alive"},
			"Keep-Alive":                {"timeout=5"},
			"Transfer-Encoding":         {"chunked"},
			"Trailer":                   {"X-Sum"},
			"X-Reflector-Authorization": {"Bearer rfl_x"},
			"Forwarded":                 {"for=198.51.100.1"},
			"X-Real-Ip":                 {"198.51.100.1"},
			"X-Forwarded-For":           {"198.51.100.1"},
			"X-Forwarded-Port":          {"443"},
			"X-Forwarded-Host":          {"evil.example"},
		}
		for k, v := range map[string]string{"Connection": connection, "Te": te, "Upgrade": upgrade} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		key := http.CanonicalHeaderKey(name)
		own := validToken(name) && h[key] == nil && key != "X-Forwarded-Proto"
		if own {
			h[key] = []string{value}
		}
		before := h.Clone()
		client := netip.Addr{}
		if known {
			client = testClient
		}
		outboundHeader(h, host, proto, client)

		for _, gone := range []string{"Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding",
			"Trailer", "X-Reflector-Authorization", "Forwarded", "X-Real-Ip", "X-Forwarded-Port"} {
			if v, ok := h[gone]; ok {
				t.Fatalf("%s: %q reaches the device (in: %q)", gone, v, before)
			}
		}
		wantFor := []string(nil)
		if known {
			wantFor = []string{testClient.String()}
		}
		if !slices.Equal(h["X-Forwarded-For"], wantFor) || !slices.Equal(h["X-Forwarded-Host"], []string{host}) ||
			!slices.Equal(h["X-Forwarded-Proto"], []string{proto}) {
			t.Fatalf("forwarding headers %q, %q, %q (in: %q)", h["X-Forwarded-For"], h["X-Forwarded-Host"], h["X-Forwarded-Proto"], before)
		}
		for k := range h {
			if strings.HasPrefix(k, "X-Forwarded-") && k != "X-Forwarded-For" && k != "X-Forwarded-Host" && k != "X-Forwarded-Proto" {
				t.Fatalf("%s reaches the device (in: %q)", k, before)
			}
		}
		if c, ok := h["Connection"]; ok {
			if !slices.Equal(c, []string{"Upgrade"}) || !namedIn(before["Connection"], "upgrade") ||
				upgrade == "" || !slices.Equal(h["Upgrade"], []string{upgrade}) {
				t.Fatalf("Connection %q, Upgrade %q (in: %q)", c, h["Upgrade"], before)
			}
		} else if u, ok := h["Upgrade"]; ok {
			t.Fatalf("Upgrade %q without Connection (in: %q)", u, before)
		} else if upgrade != "" && namedIn(before["Connection"], "upgrade") {
			t.Fatalf("the upgrade to %q was dropped (in: %q)", upgrade, before)
		}
		if v, ok := h["Te"]; ok != namedIn(before["Te"], "trailers") || ok && !slices.Equal(v, []string{"trailers"}) {
			t.Fatalf("Te %q (in: %q)", v, before)
		}
		if !own {
			return
		}
		special := slices.Contains(hopHeaders, key) || strings.HasPrefix(key, "X-Forwarded-") ||
			key == "Forwarded" || key == "X-Real-Ip" || key == headerReflectorAuth
		v, kept := h[key]
		switch {
		case special:
		case namedIn(before["Connection"], name) && kept:
			t.Fatalf("%s: %q reaches the device, though Connection names it (in: %q)", key, v, before)
		case !namedIn(before["Connection"], name) && !slices.Equal(v, []string{value}):
			t.Fatalf("%s: %q became %q (in: %q)", key, value, v, before)
		}
	})
}
