package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// TestAbsoluteFormSetsForwardedHeadersAndDropsSpoofedOnes is the attack of
// issue 15, item 6: through the proxy, GET http://pump-17.<domain>/ used to
// reach the device with the client's own X-Forwarded-For, X-Real-Ip and
// Forwarded (so a device that trusts them logs, allows or throttles by an
// address the client chose), none of ours, and with a header the client
// named in Connection, which is for the proxy alone (RFC 9110 §7.6.1). The
// device must see what the subdomain path gives it.
func TestAbsoluteFormSetsForwardedHeadersAndDropsSpoofedOnes(t *testing.T) {
	f := newWTClientFixture(t)
	got := make(chan http.Header, 1)
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))

	conn, err := tls.Dial("tcp", f.front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := strings.Join([]string{
		"GET http://pump-17.localhost/ HTTP/1.1",
		"Host: pump-17.localhost",
		"Proxy-Authorization: " + basic("alice", "alice-pw"),
		"X-Forwarded-For: 10.9.9.9",
		"X-Forwarded-Host: evil.example",
		"X-Forwarded-Proto: gopher",
		"X-Forwarded-Port: 1",
		"X-Real-Ip: 10.9.9.9",
		"Forwarded: for=10.9.9.9",
		"Connection: keep-alive, X-Hop-Secret",
		"X-Hop-Secret: for the proxy only",
		"Keep-Alive: timeout=5",
		"X-Reflector-Authorization: Bearer root",
		"Authorization: Basic ZGV2aWNlOnB3", // the device's own login passes
		"", ""}, "\r\n")
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("absolute-form GET: %s", resp.Status)
	}
	h := <-got
	want := map[string]string{
		"X-Forwarded-For":           testClient.String(),
		"X-Forwarded-Host":          "pump-17.localhost",
		"X-Forwarded-Proto":         "http", // the scheme the client asked the proxy for
		"X-Forwarded-Port":          "",
		"X-Real-Ip":                 "",
		"Forwarded":                 "",
		"X-Hop-Secret":              "",
		"Keep-Alive":                "",
		"Proxy-Authorization":       "",
		"X-Reflector-Authorization": "",
		"Authorization":             "Basic ZGV2aWNlOnB3",
	}
	for name, v := range want {
		if vs := h.Values(name); strings.Join(vs, ",") != v {
			t.Errorf("device saw %s %q, want %q", name, vs, v)
		}
	}
	for _, v := range h.Values("Connection") {
		if strings.Contains(strings.ToLower(v), "x-hop-secret") {
			t.Errorf("device saw Connection %q", v)
		}
	}
}

// TestOutboundHeaderKeepsAnUpgrade: the rewrite drops every hop-by-hop
// header but keeps a protocol upgrade, which must reach the device as
// "Connection: Upgrade" and its Upgrade header, and "Te: trailers".
func TestOutboundHeaderKeepsAnUpgrade(t *testing.T) {
	h := http.Header{
		"Connection":          {"keep-alive, Upgrade, X-Hop"},
		"Upgrade":             {"websocket"},
		"X-Hop":               {"1"},
		"Te":                  {"trailers, deflate"},
		"Trailer":             {"X-Sum"},
		"Proxy-Connection":    {"keep-alive"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"X-Forwarded-Ssl":     {"on"},
		"Sec-Websocket-Key":   {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	outboundHeader(h, "pump-17.localhost", "https", testClient)
	want := http.Header{
		"Connection":        {"Upgrade"},
		"Upgrade":           {"websocket"},
		"Te":                {"trailers"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		"X-Forwarded-For":   {testClient.String()},
		"X-Forwarded-Host":  {"pump-17.localhost"},
		"X-Forwarded-Proto": {"https"},
	}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("outbound header\n got %v\nwant %v", h, want)
	}
}
