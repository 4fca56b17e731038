package webtunnel

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/reflector-dev/reflector/tunnel"
)

// documented are the frames of tunnel/PROTOCOL.md (§6, "WebTunnel frames",
// captured from WebTunnelAgent 2.5.0), byte for byte.
var documented = []struct {
	name  string
	bytes []byte
	frame Frame
}{
	{"open channel 1 to port 22", []byte{0x01, 0x00, 0x00, 0x01, 0x00, 0x16},
		Frame{Op: OpOpen, Channel: 1, Port: 22}},
	{"open highest channel and port", []byte{0x01, 0x00, 0xff, 0xff, 0xff, 0xff},
		Frame{Op: OpOpen, Channel: 0xffff, Port: 0xffff}},
	{"confirm", []byte{0x11, 0x00, 0x01, 0x02},
		Frame{Op: OpConfirm, Channel: 0x0102}},
	{"fault port not forwarded", []byte{0x81, 0x00, 0x00, 0x07, 0x00, 0x02},
		Frame{Op: OpFault, Channel: 7, Code: CodeNotForwarded}},
	{"data", []byte{0x00, 0x00, 0x00, 0x03, 'S', 'S', 'H', '-'},
		Frame{Op: OpData, Channel: 3, Payload: []byte("SSH-")}},
	{"data without payload", []byte{0x00, 0x00, 0x00, 0x03},
		Frame{Op: OpData, Channel: 3, Payload: []byte{}}},
	{"close", []byte{0x02, 0x00, 0x00, 0x03},
		Frame{Op: OpClose, Channel: 3}},
	{"error socket", []byte{0x80, 0x00, 0x00, 0x03, 0x00, 0x05},
		Frame{Op: OpError, Channel: 3, Code: CodeSocket}},
	{"property update", append([]byte{0x40, 0x00, 0x00, 0x00, 2,
		8}, "httpPort\x0280\x04name\x07Pump 17"...),
		Frame{Op: OpProps, Props: []Property{{"httpPort", "80"}, {"name", "Pump 17"}}}},
	{"property update, 200-byte value", append([]byte{0x40, 0x00, 0x00, 0x00, 1,
		1, 'k', 0xc8, 0x01}, strings.Repeat("v", 200)...),
		Frame{Op: OpProps, Props: []Property{{"k", strings.Repeat("v", 200)}}}},
	{"property update, empty", []byte{0x40, 0x00, 0x00, 0x00, 0},
		Frame{Op: OpProps, Props: []Property{}}},
}

func TestFramesAreAsDocumented(t *testing.T) {
	for _, tc := range documented {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFrame(tc.bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.frame) {
				t.Fatalf("parsed %+v, want %+v", got, tc.frame)
			}
			enc, err := AppendFrame(nil, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, tc.bytes) {
				t.Fatalf("encoded % x, want % x", enc, tc.bytes)
			}
		})
	}
}

func TestHeaderEncodersWriteDocumentedBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"open", AppendHeader(nil, OpOpen, 1, 22), []byte{0x01, 0, 0, 1, 0, 22}},
		{"close ignores arg", AppendHeader(nil, OpClose, 0x0203, 99), []byte{0x02, 0, 2, 3}},
		{"error", AppendHeader(nil, OpError, 3, uint16(CodeProtocol)), []byte{0x80, 0, 0, 3, 0, 6}},
		{"fault", AppendHeader(nil, OpFault, 3, uint16(CodeChannelInUse)), []byte{0x81, 0, 0, 3, 0, 7}},
		{"confirm", AppendHeader(nil, OpConfirm, 3, 0), []byte{0x11, 0, 0, 3}},
		{"data header", AppendHeader(nil, OpData, 3, 0), []byte{0, 0, 0, 3}},
		{"data", AppendData([]byte("x"), 0x0100, []byte("ab")), []byte{'x', 0, 0, 1, 0, 'a', 'b'}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseDataAliasesMessage(t *testing.T) {
	msg := AppendData(nil, 9, []byte("hello"))
	f, err := ParseFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg[HeaderLen] = 'J'
	if string(f.Payload) != "Jello" {
		t.Fatalf("payload %q is a copy, want a sub-slice of the message", f.Payload)
	}
}

func TestDataInPlaceHeader(t *testing.T) {
	// The copy-free send path: header into buf[:0], payload read behind it.
	buf := make([]byte, HeaderLen+MaxPayload)
	n := copy(buf[HeaderLen:], "payload")
	hdr := AppendHeader(buf[:0], OpData, 5, 0)
	if &hdr[0] != &buf[0] {
		t.Fatal("header was not written in place")
	}
	f, err := ParseFrame(buf[:HeaderLen+n])
	if err != nil || f.Op != OpData || f.Channel != 5 || string(f.Payload) != "payload" {
		t.Fatalf("got %+v, %v", f, err)
	}
}

func TestRoundTrip(t *testing.T) {
	many := make([]Property, 255)
	for i := range many {
		many[i] = Property{Key: strings.Repeat("k", i), Value: ""}
	}
	for _, f := range []Frame{
		{Op: OpData, Channel: 1, Payload: bytes.Repeat([]byte{0xaa}, MaxPayload)},
		{Op: OpData, Channel: 1, Payload: bytes.Repeat([]byte{0xaa}, 64<<10)}, // agents send more
		{Op: OpData, Flags: 0x5a, Channel: 2, Payload: []byte{}},
		{Op: OpOpen, Flags: 1, Channel: 0, Port: 0},
		{Op: OpError, Channel: 2, Code: 0xffff},
		{Op: OpProps, Channel: 0, Props: many},
		{Op: OpProps, Props: []Property{{"", ""}, {"a", ""}, {"", "b"}, {"a", "dup"}}},
		{Op: OpProps, Props: []Property{{strings.Repeat("k", 127), strings.Repeat("v", 128)}}},
		{Op: OpProps, Props: []Property{{"big", strings.Repeat("v", 1<<14)}}}, // 3-byte varint
	} {
		enc, err := AppendFrame(nil, f)
		if err != nil {
			t.Fatalf("%s: %v", f.Op, err)
		}
		got, err := ParseFrame(enc)
		if err != nil {
			t.Fatalf("%s: %v", f.Op, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("%s: round trip changed the frame", f.Op)
		}
	}
}

func TestParseFrameRejectsMalformed(t *testing.T) {
	props := func(body ...byte) []byte { return append([]byte{0x40, 0, 0, 0}, body...) }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{0x00, 0x00, 0x01}},
		{"unknown opcode 0x03", []byte{0x03, 0, 0, 1}},
		{"unknown opcode 0x12", []byte{0x12, 0, 0, 1}},
		{"unknown opcode 0xff", []byte{0xff, 0, 0, 1, 0, 0}},
		{"close with trailing byte", []byte{0x02, 0, 0, 1, 0}},
		{"confirm with trailing bytes", []byte{0x11, 0, 0, 1, 0, 0}},
		{"open without port", []byte{0x01, 0, 0, 1}},
		{"open with half a port", []byte{0x01, 0, 0, 1, 0}},
		{"open with trailing byte", []byte{0x01, 0, 0, 1, 0, 22, 0}},
		{"fault without code", []byte{0x81, 0, 0, 1}},
		{"fault with half a code", []byte{0x81, 0, 0, 1, 0}},
		{"error with trailing byte", []byte{0x80, 0, 0, 1, 0, 2, 9}},
		{"data above the message limit", make([]byte, MaxMessage+1)},
		{"props without count", props()},
		{"props count beyond frame", props(1)},
		{"props count 255 in 10 bytes", props(255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"props one of two", props(2, 1, 'k', 1, 'v')},
		{"props key without value", props(1, 1, 'k', 0x80)},
		{"props trailing bytes", props(1, 1, 'k', 1, 'v', 0)},
		{"props count 0 with trailing", props(0, 0, 0)},
		{"varint overlong", props(1, 0x81, 0x00, 'k', 0)},
		{"varint overlong zero", props(1, 0x80, 0x00, 0)},
		{"varint of 6 bytes", props(1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'k', 0)},
		{"varint cut short", props(1, 0, 0x80)},
		{"varint 5 bytes beyond uint32", props(1, 0, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{"varint 5 bytes beyond frame", props(1, 0, 0x80, 0x80, 0x80, 0x80, 0x01)},
		{"key length beyond frame", props(1, 5, 'k', 0)},
		{"value length beyond frame", props(1, 1, 'k', 2, 'v')},
		{"value length 128 with 127 bytes", append(props(1, 0, 0x80, 0x01), strings.Repeat("v", 127)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFrame(tc.in)
			if err == nil {
				t.Fatalf("accepted % x as %+v", tc.in[:min(len(tc.in), 16)], f)
			}
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("err %v is not ErrBadFrame", err)
			}
		})
	}
}

func TestAppendFrameRejectsWhatCannotBeSent(t *testing.T) {
	dst := []byte("keep")
	for _, tc := range []struct {
		name string
		f    Frame
	}{
		{"unknown opcode", Frame{Op: 0x03}},
		{"256 properties", Frame{Op: OpProps, Props: make([]Property, 256)}},
		{"data above the message limit", Frame{Op: OpData, Payload: make([]byte, MaxMessage)}},
		{"props above the message limit", Frame{Op: OpProps, Props: []Property{{"k", strings.Repeat("v", MaxMessage)}}}},
	} {
		got, err := AppendFrame(dst, tc.f)
		if !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: err %v, want ErrBadFrame", tc.name, err)
		}
		if string(got) != "keep" {
			t.Errorf("%s: dst changed to %q", tc.name, got)
		}
	}
}

func TestAppendDataHoldsToMaxPayload(t *testing.T) {
	if got := AppendData(nil, 1, make([]byte, MaxPayload)); len(got) != HeaderLen+MaxPayload {
		t.Fatalf("frame of %d bytes", len(got))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a payload of MaxPayload+1 bytes did not panic")
		}
	}()
	AppendData(nil, 1, make([]byte, MaxPayload+1))
}

func TestCodeErrMapsToSentinels(t *testing.T) {
	sentinels := []error{tunnel.ErrPortNotAllowed, tunnel.ErrRefused, tunnel.ErrTimeout, tunnel.ErrDeviceFailure}
	for code, want := range map[Code]error{
		CodeNotForwarded: tunnel.ErrPortNotAllowed, // 403
		CodeRefused:      tunnel.ErrRefused,        // 502
		CodeTimeout:      tunnel.ErrTimeout,        // 504
		0:                tunnel.ErrDeviceFailure,  // 502 for the rest
		CodeBadChannel:   tunnel.ErrDeviceFailure,
		CodeSocket:       tunnel.ErrDeviceFailure,
		CodeProtocol:     tunnel.ErrDeviceFailure,
		CodeChannelInUse: tunnel.ErrDeviceFailure,
		0xffff:           tunnel.ErrDeviceFailure,
	} {
		err := code.Err()
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == want) {
				t.Errorf("code %d (%v): errors.Is(%q, %q) = %v", code, code, err, s, !(s == want))
			}
		}
		var oe *tunnel.OpenError
		if !errors.As(err, &oe) {
			t.Errorf("code %d: %T is not an *tunnel.OpenError", code, err)
		}
	}
	if got := CodeSocket.Err().Error(); got != "device failure: webtunnel socket error" {
		t.Errorf("message %q", got)
	}
}

func TestFramingDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, HeaderLen+MaxPayload)
	payload := bytes.Repeat([]byte{1}, MaxPayload)
	data := AppendData(nil, 7, payload)
	open := AppendHeader(nil, OpOpen, 7, 22)
	fault := AppendHeader(nil, OpFault, 7, 3)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendData(buf[:0], 7, payload)
		buf = AppendHeader(buf[:0], OpClose, 7, 0)
		buf = AppendHeader(buf[:0], OpOpen, 7, 22)
	}); n != 0 {
		t.Fatalf("encoding: %v allocations per run", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, msg := range [][]byte{data, open, fault} {
			if _, err := ParseFrame(msg); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("decoding: %v allocations per run", n)
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, tc := range documented {
		f.Add(tc.bytes)
	}
	f.Add([]byte{0x40, 0, 0, 0, 1, 0x80, 0x00, 0})
	f.Add([]byte{0x40, 0, 0, 0, 1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00})
	f.Add([]byte{0x81, 0, 0, 1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v is not ErrBadFrame", err)
			}
			return
		}
		enc, err := AppendFrame(nil, fr)
		if err != nil {
			t.Fatalf("accepted % x but cannot encode it: %v", b, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("accepted % x, re-encoded as % x", b, enc)
		}
	})
}
