package tunnel

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestOpenHeaderRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		port   uint16
		client string
		want   string
	}{
		{"ssh", 22, "192.0.2.1:5000", "192.0.2.1:5000"},
		{"no client", 80, "", ""},
		{"highest port", 65535, "x", "x"},
		{"long client truncated", 443, strings.Repeat("a", 300), strings.Repeat("a", 255)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendOpen(nil, tc.port, tc.client)
			r := bytes.NewReader(append(b, "rest"...))
			got, err := ReadOpen(r)
			if err != nil {
				t.Fatal(err)
			}
			if got.Port != tc.port || got.Client != tc.want {
				t.Fatalf("got %+v, want port %d client %q", got, tc.port, tc.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "rest" {
				t.Fatalf("ReadOpen consumed past the header: rest %q", rest)
			}
		})
	}
}

func TestOpenHeaderBytesAreAsDocumented(t *testing.T) {
	got := AppendOpen(nil, 0x1f90, "ab")
	want := []byte{1, 1, 0x1f, 0x90, 2, 'a', 'b'}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	if got := AppendReply(nil, StatusRefused, "no"); !bytes.Equal(got, []byte{2, 2, 'n', 'o'}) {
		t.Fatalf("reply % x", got)
	}
}

func TestReadOpenRejectsBadHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		bad  bool // ErrBadHeader rather than a short read
	}{
		{"empty", nil, false},
		{"short", []byte{1, 1, 0}, false},
		{"version 2", []byte{2, 1, 0, 22, 0}, true},
		{"kind udp", []byte{1, 2, 0, 22, 0}, true},
		{"port zero", []byte{1, 1, 0, 0, 0}, true},
		{"address cut", []byte{1, 1, 0, 22, 5, 'a'}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadOpen(bytes.NewReader(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, ErrBadHeader) != tc.bad {
				t.Fatalf("err %v, want ErrBadHeader=%v", err, tc.bad)
			}
		})
	}
}

func TestReadReplyLeavesDeviceBytesInStream(t *testing.T) {
	r := bytes.NewReader(append(AppendReply(nil, StatusOK, ""), "SSH-2.0-x\r\n"...))
	st, msg, err := ReadReply(r)
	if err != nil || st != StatusOK || msg != "" {
		t.Fatalf("got %v %q %v", st, msg, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "SSH-2.0-x\r\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestOpenErrorUnwrapsToSentinel(t *testing.T) {
	for st, want := range map[Status]error{
		StatusNotAllowed: ErrPortNotAllowed,
		StatusRefused:    ErrRefused,
		StatusTimeout:    ErrTimeout,
		StatusOther:      ErrDeviceFailure,
		Status(99):       ErrDeviceFailure,
	} {
		err := error(&OpenError{Status: st, Message: "m"})
		if !errors.Is(err, want) {
			t.Errorf("status %v: %v is not %v", st, err, want)
		}
	}
}

func TestFramingDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendOpen(buf[:0], 22, "192.0.2.1:5000")
		buf = AppendReply(buf[:0], StatusOK, "")
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
	hdr := AppendOpen(nil, 22, "")
	r := bytes.NewReader(hdr)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(hdr)
		if _, err := ReadOpen(r); err != nil {
			t.Fatal(err)
		}
	}); n > 1 { // the read buffer escapes through io.Reader; nothing else may
		t.Fatalf("ReadOpen: %v allocations per run", n)
	}
}

func FuzzReadOpen(f *testing.F) {
	f.Add(AppendOpen(nil, 22, "1.2.3.4:5"))
	f.Add([]byte{1, 1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ReadOpen(bytes.NewReader(b))
		if err != nil {
			return
		}
		if req.Port == 0 || len(req.Client) > 255 {
			t.Fatalf("accepted %+v", req)
		}
		again, err := ReadOpen(bytes.NewReader(AppendOpen(nil, req.Port, req.Client)))
		if err != nil || again != req {
			t.Fatalf("round trip %+v -> %+v, %v", req, again, err)
		}
	})
}

// FuzzReadReply: ReadReply accepts exactly the inputs that begin with a
// whole reply; what it accepts, AppendReply encodes back to the same bytes;
// and it reads nothing past the reply, whether the stream hands it the
// bytes at once or one at a time, so what the device sends first (an SSH
// banner) stays in the stream.
func FuzzReadReply(f *testing.F) {
	f.Add(AppendReply(nil, StatusRefused, "refused"))
	f.Add([]byte{0})
	f.Add(append(AppendReply(nil, StatusOK, ""), "SSH-2.0-OpenSSH_9.6\r\n"...))
	f.Add(append(AppendReply(nil, StatusTimeout, strings.Repeat("t", 255)), 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		whole := len(b) >= 2 && len(b) >= 2+int(b[1])
		for _, oneByte := range []bool{false, true} {
			br := bytes.NewReader(b)
			var r io.Reader = br
			if oneByte {
				r = iotest.OneByteReader(br)
			}
			st, msg, err := ReadReply(r)
			if err != nil {
				if whole {
					t.Fatalf("% x: a whole reply refused: %v", b, err)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("% x: error %v is not a short read", b, err)
				}
				continue
			}
			if !whole {
				t.Fatalf("% x: accepted %v %q from less than a reply", b, st, msg)
			}
			n := 2 + len(msg)
			if enc := AppendReply(nil, st, msg); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("% x: accepted %v %q, which encodes as % x", b, st, msg, enc)
			}
			if br.Len() != len(b)-n {
				t.Fatalf("% x: read %d bytes for a reply of %d", b, len(b)-br.Len(), n)
			}
		}
	})
}
