package tunnel

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// wtDocumented are the frames of ../shared/compat/README.md ("Frames",
// captured from WebTunnelAgent 2.5.0), byte for byte.
var wtDocumented = []struct {
	name  string
	bytes []byte
	frame WTFrame
}{
	{"open channel 1 to port 22", []byte{0x01, 0x00, 0x00, 0x01, 0x00, 0x16},
		WTFrame{Op: WTOpOpen, Channel: 1, Port: 22}},
	{"open highest channel and port", []byte{0x01, 0x00, 0xff, 0xff, 0xff, 0xff},
		WTFrame{Op: WTOpOpen, Channel: 0xffff, Port: 0xffff}},
	{"confirm", []byte{0x11, 0x00, 0x01, 0x02},
		WTFrame{Op: WTOpConfirm, Channel: 0x0102}},
	{"fault port not forwarded", []byte{0x81, 0x00, 0x00, 0x07, 0x00, 0x02},
		WTFrame{Op: WTOpFault, Channel: 7, Code: WTErrNotForwarded}},
	{"data", []byte{0x00, 0x00, 0x00, 0x03, 'S', 'S', 'H', '-'},
		WTFrame{Op: WTOpData, Channel: 3, Payload: []byte("SSH-")}},
	{"data without payload", []byte{0x00, 0x00, 0x00, 0x03},
		WTFrame{Op: WTOpData, Channel: 3, Payload: []byte{}}},
	{"close", []byte{0x02, 0x00, 0x00, 0x03},
		WTFrame{Op: WTOpClose, Channel: 3}},
	{"error socket", []byte{0x80, 0x00, 0x00, 0x03, 0x00, 0x05},
		WTFrame{Op: WTOpError, Channel: 3, Code: WTErrSocket}},
	{"property update", append([]byte{0x40, 0x00, 0x00, 0x00, 2,
		8}, "httpPort\x0280\x04name\x07Pump 17"...),
		WTFrame{Op: WTOpProps, Props: []WTProperty{{"httpPort", "80"}, {"name", "Pump 17"}}}},
	{"property update, 200-byte value", append([]byte{0x40, 0x00, 0x00, 0x00, 1,
		1, 'k', 0xc8, 0x01}, strings.Repeat("v", 200)...),
		WTFrame{Op: WTOpProps, Props: []WTProperty{{"k", strings.Repeat("v", 200)}}}},
	{"property update, empty", []byte{0x40, 0x00, 0x00, 0x00, 0},
		WTFrame{Op: WTOpProps, Props: []WTProperty{}}},
}

func TestWTFramesAreAsDocumented(t *testing.T) {
	for _, tc := range wtDocumented {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWTFrame(tc.bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.frame) {
				t.Fatalf("parsed %+v, want %+v", got, tc.frame)
			}
			enc, err := AppendWTFrame(nil, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, tc.bytes) {
				t.Fatalf("encoded % x, want % x", enc, tc.bytes)
			}
		})
	}
}

func TestWTHeaderEncodersWriteDocumentedBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"open", AppendWTHeader(nil, WTOpOpen, 1, 22), []byte{0x01, 0, 0, 1, 0, 22}},
		{"close ignores arg", AppendWTHeader(nil, WTOpClose, 0x0203, 99), []byte{0x02, 0, 2, 3}},
		{"error", AppendWTHeader(nil, WTOpError, 3, uint16(WTErrProtocol)), []byte{0x80, 0, 0, 3, 0, 6}},
		{"fault", AppendWTHeader(nil, WTOpFault, 3, uint16(WTErrChannelInUse)), []byte{0x81, 0, 0, 3, 0, 7}},
		{"confirm", AppendWTHeader(nil, WTOpConfirm, 3, 0), []byte{0x11, 0, 0, 3}},
		{"data header", AppendWTHeader(nil, WTOpData, 3, 0), []byte{0, 0, 0, 3}},
		{"data", AppendWTData([]byte("x"), 0x0100, []byte("ab")), []byte{'x', 0, 0, 1, 0, 'a', 'b'}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseWTDataAliasesMessage(t *testing.T) {
	msg := AppendWTData(nil, 9, []byte("hello"))
	f, err := ParseWTFrame(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg[WTHeaderLen] = 'J'
	if string(f.Payload) != "Jello" {
		t.Fatalf("payload %q is a copy, want a sub-slice of the message", f.Payload)
	}
}

func TestWTDataInPlaceHeader(t *testing.T) {
	// The copy-free send path: header into buf[:0], payload read behind it.
	buf := make([]byte, WTHeaderLen+MaxWTPayload)
	n := copy(buf[WTHeaderLen:], "payload")
	hdr := AppendWTHeader(buf[:0], WTOpData, 5, 0)
	if &hdr[0] != &buf[0] {
		t.Fatal("header was not written in place")
	}
	f, err := ParseWTFrame(buf[:WTHeaderLen+n])
	if err != nil || f.Op != WTOpData || f.Channel != 5 || string(f.Payload) != "payload" {
		t.Fatalf("got %+v, %v", f, err)
	}
}

func TestWTRoundTrip(t *testing.T) {
	many := make([]WTProperty, 255)
	for i := range many {
		many[i] = WTProperty{Key: strings.Repeat("k", i), Value: ""}
	}
	for _, f := range []WTFrame{
		{Op: WTOpData, Channel: 1, Payload: bytes.Repeat([]byte{0xaa}, MaxWTPayload)},
		{Op: WTOpData, Channel: 1, Payload: bytes.Repeat([]byte{0xaa}, 64<<10)}, // agents send more
		{Op: WTOpData, Flags: 0x5a, Channel: 2, Payload: []byte{}},
		{Op: WTOpOpen, Flags: 1, Channel: 0, Port: 0},
		{Op: WTOpError, Channel: 2, Code: 0xffff},
		{Op: WTOpProps, Channel: 0, Props: many},
		{Op: WTOpProps, Props: []WTProperty{{"", ""}, {"a", ""}, {"", "b"}, {"a", "dup"}}},
		{Op: WTOpProps, Props: []WTProperty{{strings.Repeat("k", 127), strings.Repeat("v", 128)}}},
		{Op: WTOpProps, Props: []WTProperty{{"big", strings.Repeat("v", 1<<14)}}}, // 3-byte varint
	} {
		enc, err := AppendWTFrame(nil, f)
		if err != nil {
			t.Fatalf("%s: %v", f.Op, err)
		}
		got, err := ParseWTFrame(enc)
		if err != nil {
			t.Fatalf("%s: %v", f.Op, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("%s: round trip changed the frame", f.Op)
		}
	}
}

func TestParseWTFrameRejectsMalformed(t *testing.T) {
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
		{"data above the message limit", make([]byte, MaxWTMessage+1)},
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
			f, err := ParseWTFrame(tc.in)
			if err == nil {
				t.Fatalf("accepted % x as %+v", tc.in[:min(len(tc.in), 16)], f)
			}
			if !errors.Is(err, ErrBadWTFrame) {
				t.Fatalf("err %v is not ErrBadWTFrame", err)
			}
		})
	}
}

func TestAppendWTFrameRejectsWhatCannotBeSent(t *testing.T) {
	dst := []byte("keep")
	for _, tc := range []struct {
		name string
		f    WTFrame
	}{
		{"unknown opcode", WTFrame{Op: 0x03}},
		{"256 properties", WTFrame{Op: WTOpProps, Props: make([]WTProperty, 256)}},
		{"data above the message limit", WTFrame{Op: WTOpData, Payload: make([]byte, MaxWTMessage)}},
		{"props above the message limit", WTFrame{Op: WTOpProps, Props: []WTProperty{{"k", strings.Repeat("v", MaxWTMessage)}}}},
	} {
		got, err := AppendWTFrame(dst, tc.f)
		if !errors.Is(err, ErrBadWTFrame) {
			t.Errorf("%s: err %v, want ErrBadWTFrame", tc.name, err)
		}
		if string(got) != "keep" {
			t.Errorf("%s: dst changed to %q", tc.name, got)
		}
	}
}

func TestAppendWTDataHoldsToMaxPayload(t *testing.T) {
	if got := AppendWTData(nil, 1, make([]byte, MaxWTPayload)); len(got) != WTHeaderLen+MaxWTPayload {
		t.Fatalf("frame of %d bytes", len(got))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a payload of MaxWTPayload+1 bytes did not panic")
		}
	}()
	AppendWTData(nil, 1, make([]byte, MaxWTPayload+1))
}

func TestWTCodeErrMapsToSentinels(t *testing.T) {
	sentinels := []error{ErrPortNotAllowed, ErrRefused, ErrTimeout, ErrDeviceFailure}
	for code, want := range map[WTCode]error{
		WTErrNotForwarded: ErrPortNotAllowed, // 403
		WTErrRefused:      ErrRefused,        // 502
		WTErrTimeout:      ErrTimeout,        // 504
		0:                 ErrDeviceFailure,  // 502 for the rest
		WTErrBadChannel:   ErrDeviceFailure,
		WTErrSocket:       ErrDeviceFailure,
		WTErrProtocol:     ErrDeviceFailure,
		WTErrChannelInUse: ErrDeviceFailure,
		0xffff:            ErrDeviceFailure,
	} {
		err := code.Err()
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == want) {
				t.Errorf("code %d (%v): errors.Is(%q, %q) = %v", code, code, err, s, !(s == want))
			}
		}
		var oe *OpenError
		if !errors.As(err, &oe) {
			t.Errorf("code %d: %T is not an *OpenError", code, err)
		}
	}
	if got := WTErrSocket.Err().Error(); got != "device failure: webtunnel socket error" {
		t.Errorf("message %q", got)
	}
}

func TestWTFramingDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, WTHeaderLen+MaxWTPayload)
	payload := bytes.Repeat([]byte{1}, MaxWTPayload)
	data := AppendWTData(nil, 7, payload)
	open := AppendWTHeader(nil, WTOpOpen, 7, 22)
	fault := AppendWTHeader(nil, WTOpFault, 7, 3)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendWTData(buf[:0], 7, payload)
		buf = AppendWTHeader(buf[:0], WTOpClose, 7, 0)
		buf = AppendWTHeader(buf[:0], WTOpOpen, 7, 22)
	}); n != 0 {
		t.Fatalf("encoding: %v allocations per run", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, msg := range [][]byte{data, open, fault} {
			if _, err := ParseWTFrame(msg); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("decoding: %v allocations per run", n)
	}
}

func FuzzParseWTFrame(f *testing.F) {
	for _, tc := range wtDocumented {
		f.Add(tc.bytes)
	}
	f.Add([]byte{0x40, 0, 0, 0, 1, 0x80, 0x00, 0})
	f.Add([]byte{0x40, 0, 0, 0, 1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00})
	f.Add([]byte{0x81, 0, 0, 1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseWTFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadWTFrame) {
				t.Fatalf("error %v is not ErrBadWTFrame", err)
			}
			return
		}
		enc, err := AppendWTFrame(nil, fr)
		if err != nil {
			t.Fatalf("accepted % x but cannot encode it: %v", b, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("accepted % x, re-encoded as % x", b, enc)
		}
	})
}
