package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/store"
)

// connectTo opens a CONNECT stream as alice to an echo port of device id
// (group ops) and checks that it carries bytes; it returns the stream and
// the echo port.
func connectTo(t *testing.T, f *subdomainFixture, id string) (net.Conn, *bufio.Reader, uint16) {
	t.Helper()
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: id, Groups: []string{"ops"}})
	c := dialFront(t, tlsFront(f))
	br := bufio.NewReader(c)
	if resp, body := sendConnect(t, c, br, connectRequest(id+".localhost:"+strconv.Itoa(int(echo)), "Bearer tok-alice"), nil); resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %d %q", id, resp.StatusCode, body)
	}
	io.WriteString(c, "hi")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo %q %v", buf, err)
	}
	return c, br, echo
}

// oneStream returns the only stream Streams(device) lists.
func oneStream(t *testing.T, p *Proxy, device string) Stream {
	t.Helper()
	ss := p.Streams(device)
	if len(ss) != 1 {
		t.Fatalf("Streams(%q) = %+v, want one", device, ss)
	}
	return ss[0]
}

var streamIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestStreamsListsAnOpenConnectStream: an open CONNECT stream is listed
// with who opened it, from where, to which port, by which path and since
// when, under an opaque ID of 16 hex digits.
func TestStreamsListsAnOpenConnectStream(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	before := time.Now()
	_, _, echo := connectTo(t, f, "pump-17")
	s := oneStream(t, f.p, "pump-17")
	if !streamIDPattern.MatchString(s.ID) {
		t.Errorf("ID %q, want 16 hex digits", s.ID)
	}
	if s.User != "alice" || s.TokenID != "" || s.Device != "pump-17" || s.Port != echo ||
		s.Client != testClient || s.Via != ViaConnect {
		t.Errorf("stream %+v", s)
	}
	if s.Since.Before(before) || s.Since.After(time.Now()) {
		t.Errorf("Since %v, want between %v and now", s.Since, before)
	}
	if all := f.p.Streams(""); len(all) != 1 || all[0].ID != s.ID {
		t.Errorf(`Streams("") = %+v, want the one stream`, all)
	}
}

// TestStreamsCountBytesWhileTheStreamIsOpen: the byte counts grow as bytes
// pass, without waiting for the stream to close.
func TestStreamsCountBytesWhileTheStreamIsOpen(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	c, br, _ := connectTo(t, f, "pump-17") // 2 bytes each way so far
	const n = 300_000
	go io.WriteString(c, strings.Repeat("x", n))
	if _, err := io.CopyN(io.Discard, br, n); err != nil {
		t.Fatalf("echo of %d bytes: %v", n, err)
	}
	waitUntil(t, func() bool {
		s := oneStream(t, f.p, "pump-17")
		return s.BytesUp >= n+2 && s.BytesDown >= n+2
	})
	if s := oneStream(t, f.p, "pump-17"); s.BytesUp != n+2 || s.BytesDown != n+2 {
		t.Errorf("BytesUp %d, BytesDown %d; want %d each way", s.BytesUp, s.BytesDown, n+2)
	}
}

// TestStreamsOfADeviceAreThatDevicesOldestFirst: Streams(device) lists only
// that device's streams, Streams("") every device's, oldest first, each
// under its own ID.
func TestStreamsOfADeviceAreThatDevicesOldestFirst(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	for _, id := range []string{"pump-17", "pump-18", "pump-17"} {
		connectTo(t, f, id)
	}
	all := f.p.Streams("")
	if len(all) != 3 || all[0].Device != "pump-17" || all[1].Device != "pump-18" || all[2].Device != "pump-17" {
		t.Fatalf(`Streams("") = %+v, want pump-17, pump-18, pump-17`, all)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Since.Before(all[i-1].Since) {
			t.Errorf("stream %d opened before stream %d: %v < %v", i, i-1, all[i].Since, all[i-1].Since)
		}
	}
	if all[0].ID == all[1].ID || all[0].ID == all[2].ID || all[1].ID == all[2].ID {
		t.Errorf("IDs not distinct: %s %s %s", all[0].ID, all[1].ID, all[2].ID)
	}
	if got := f.p.Streams("pump-17"); len(got) != 2 || got[0].ID != all[0].ID || got[1].ID != all[2].ID {
		t.Errorf("Streams(pump-17) = %+v", got)
	}
	if got := f.p.Streams("pump-18"); len(got) != 1 || got[0].ID != all[1].ID {
		t.Errorf("Streams(pump-18) = %+v", got)
	}
	if got := f.p.Streams("pump-19"); len(got) != 0 {
		t.Errorf("Streams(pump-19) = %+v, want none", got)
	}
}

// TestCutStreamEndsTheStreamAndAuditsTheCut: an administrator's cut closes
// the user's connection at once; the stream's audit event says it was cut.
func TestCutStreamEndsTheStreamAndAuditsTheCut(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	_, br, echo := connectTo(t, f, "pump-17")
	s := oneStream(t, f.p, "pump-17")
	cut, ok := f.p.CutStream("pump-17", s.ID)
	if !ok || cut.ID != s.ID || cut.User != "alice" || cut.Port != echo {
		t.Fatalf("CutStream = %+v, %v; want the stream, true", cut, ok)
	}
	streamEnds(t, br)
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	ev := f.auditEvents()[0]
	if ev.Kind != store.AuditStream || ev.Reason != "closed: cut by an administrator" || ev.User != "alice" ||
		ev.Device != "pump-17" || ev.BytesUp != 2 || ev.BytesDown != 2 {
		t.Errorf("audit event %+v", ev)
	}
	waitUntil(t, func() bool { return f.p.Open() == 0 && len(f.p.Streams("")) == 0 })
	if _, ok := f.p.CutStream("pump-17", s.ID); ok {
		t.Error("CutStream of a stream that has ended = true")
	}
}

// TestCutStreamOfAnUnknownOrAnotherDevicesStreamIsFalse: an ID cuts only a
// stream of the device it is given with; anything else leaves every stream
// open.
func TestCutStreamOfAnUnknownOrAnotherDevicesStreamIsFalse(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	c17, br17, _ := connectTo(t, f, "pump-17")
	connectTo(t, f, "pump-18")
	other := oneStream(t, f.p, "pump-18")
	for _, id := range []string{other.ID, "", "0000000000000000", "ffffffffffffffff", "not-hex", strings.ToUpper(other.ID) + "0"} {
		if s, ok := f.p.CutStream("pump-17", id); ok {
			t.Errorf("CutStream(pump-17, %q) = %+v, true", id, s)
		}
	}
	if _, ok := f.p.CutStream("pump-19", other.ID); ok {
		t.Error("CutStream of pump-18's stream given pump-19 = true")
	}
	if len(f.p.Streams("")) != 2 {
		t.Errorf("Streams = %+v, want both still open", f.p.Streams(""))
	}
	io.WriteString(c17, "still")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(br17, buf); err != nil || string(buf) != "still" {
		t.Fatalf("pump-17's stream after the refused cuts: %q %v", buf, err)
	}
	if n := len(f.auditEvents()); n != 0 {
		t.Errorf("%d audit events, want none", n)
	}
}

// TestRevalidatedStreamKeepsItsReasonWhenAlsoCut: a stream ended by
// Revalidate is audited as revoked even if an administrator cuts it too
// before it has closed.
func TestRevalidatedStreamKeepsItsReasonWhenAlsoCut(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	_, br, _ := connectTo(t, f, "pump-17")
	s := oneStream(t, f.p, "pump-17")
	f.revoked.Store(true)
	f.p.Revalidate()
	f.p.CutStream("pump-17", s.ID)
	streamEnds(t, br)
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.Reason != "closed: access revoked" {
		t.Errorf("audit reason %q", ev.Reason)
	}
}

// TestStreamsListsClientToolStreams: a macchina.io client tool's stream is
// listed as "client-tool", counted live, and cut like a CONNECT stream.
func TestStreamsListsClientToolStreams(t *testing.T) {
	f := newWTClientFixture(t)
	echo := tcpEcho(t)
	f.setDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}})
	c, resp, err := f.wtDial("pump-17.localhost", wtHeader("Bearer tok-alice", int(echo)), false)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	c.WriteMessage(websocket.BinaryMessage, []byte("hello"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "hello" {
		t.Fatalf("echo %q %v", msg, err)
	}
	waitUntil(t, func() bool {
		s := oneStream(t, f.p, "pump-17")
		return s.BytesUp == 5 && s.BytesDown == 5
	})
	s := oneStream(t, f.p, "pump-17")
	if s.Via != ViaClientTool || s.User != "alice" || s.Port != echo || s.Client != testClient {
		t.Errorf("stream %+v", s)
	}
	if _, ok := f.p.CutStream("pump-17", s.ID); !ok {
		t.Fatal("CutStream = false")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("read after the cut succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("still open 5 s after the cut")
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.Reason != "webtunnel: closed: cut by an administrator" {
		t.Errorf("audit reason %q", ev.Reason)
	}
}

// TestStreamsListsForwardedRequests: an event stream on a device host is
// listed as "subdomain" and an absolute-form request as "absolute", with
// the response bytes counted while they flow; a cut ends the request and
// its audit event says so.
func TestStreamsListsForwardedRequests(t *testing.T) {
	f := newProxyFixture(t, nil, nil)
	port := f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	resp := f.get("https://pump-17.localhost/events", "alice")
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: hello\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	// The writer counts a write once it has returned: the client may read
	// the bytes first.
	waitUntil(t, func() bool { return oneStream(t, f.p, "pump-17").BytesDown == int64(len("data: hello\n\n")) })
	s := oneStream(t, f.p, "pump-17")
	if s.Via != ViaSubdomain || s.User != "alice" || s.Port != port || s.Client != testClient || s.BytesUp != 0 {
		t.Errorf("device host request %+v", s)
	}

	conn := dialFront(t, tlsFront(f))
	fmt.Fprintf(conn, "GET http://pump-17.localhost/events HTTP/1.1\r\nHost: pump-17.localhost\r\nProxy-Authorization: %s\r\n\r\n", basic("alice", "alice-pw"))
	abr := bufio.NewReader(conn)
	if aresp, err := http.ReadResponse(abr, nil); err != nil || aresp.StatusCode != http.StatusOK {
		t.Fatalf("absolute-form request: %v %v", aresp, err)
	}
	waitUntil(t, func() bool { return len(f.p.Streams("pump-17")) == 2 })
	if a := f.p.Streams("pump-17")[1]; a.Via != ViaAbsolute || a.Port != port {
		t.Errorf("absolute-form request %+v", a)
	}

	if _, ok := f.p.CutStream("pump-17", s.ID); !ok {
		t.Fatal("CutStream = false")
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("request still open 5 s after the cut")
	}
	waitUntil(t, func() bool { return len(f.auditEvents()) == 1 })
	if ev := f.auditEvents()[0]; ev.Reason != "GET /events 200 (closed: cut by an administrator)" {
		t.Errorf("audit reason %q", ev.Reason)
	}
	if left := f.p.Streams(""); len(left) != 1 || left[0].Via != ViaAbsolute {
		t.Errorf("after the cut: %+v, want the absolute-form request alone", left)
	}
}

// TestStreamIDsReadBackOnlyAsWritten: an ID is 16 lower-case hex digits of
// a 64-bit number; any other spelling of that number names no stream.
func TestStreamIDsReadBackOnlyAsWritten(t *testing.T) {
	seen := map[string]bool{}
	for seq := range uint64(1000) {
		s := formatStreamID(streamID(seq, 42))
		if n, ok := parseStreamID(s); !ok || formatStreamID(n) != s {
			t.Fatalf("parseStreamID(%q) = %x, %v", s, n, ok)
		}
		if seen[s] {
			t.Fatalf("ID %s repeats at %d", s, seq)
		}
		seen[s] = true
	}
	for _, s := range []string{"", "00ff", "00000000000000FF", "+00000000000000f", "0x000000000000ff", "00000000000000ff0"} {
		if n, ok := parseStreamID(s); ok {
			t.Errorf("parseStreamID(%q) = %x, true", s, n)
		}
	}
}
