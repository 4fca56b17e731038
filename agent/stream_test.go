package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// newTestAgent returns an agent that is never run, for its stream handler.
func newTestAgent(t *testing.T, ports ...uint16) *Agent {
	t.Helper()
	a, err := New(Config{ReflectorURL: "https://reflector.invalid", DeviceID: testDevice,
		Secret: testSecret, Ports: ports}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// openStream runs the agent's handler on one end of a pipe, writes an open
// header for port on the other, and returns the reply and the reflector's end.
func openStream(t *testing.T, a *Agent, port uint16) (tunnel.Status, string, net.Conn) {
	t.Helper()
	agentEnd, reflectorEnd := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.serveStream(context.Background(), agentEnd)
	}()
	t.Cleanup(func() {
		reflectorEnd.Close()
		<-done
	})
	reflectorEnd.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := reflectorEnd.Write(tunnel.AppendOpen(nil, port, "192.0.2.1:5555")); err != nil {
		t.Fatalf("write open header: %v", err)
	}
	status, msg, err := tunnel.ReadReply(reflectorEnd)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return status, msg, reflectorEnd
}

func TestStreamToAPortNotAllowedIsRefused(t *testing.T) {
	a := newTestAgent(t, echoListener(t))
	status, msg, conn := openStream(t, a, 9)
	if status != tunnel.StatusNotAllowed || msg != "port not allowed" {
		t.Errorf("reply %v %q, want port not allowed", status, msg)
	}
	if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the refusal: read %d, %v; want the stream closed", n, err)
	}
}

func TestStreamToAnAllowedPortIsJoined(t *testing.T) {
	echo := echoListener(t)
	a := newTestAgent(t, echo)
	status, msg, conn := openStream(t, a, echo)
	if status != tunnel.StatusOK || msg != "" {
		t.Fatalf("reply %v %q, want ok", status, msg)
	}
	echoOnce(t, conn, "over a pipe")
}

func TestStreamToAClosedPortIsRefused(t *testing.T) {
	closed := closedPort(t)
	a := newTestAgent(t, closed)
	status, msg, _ := openStream(t, a, closed)
	if status != tunnel.StatusRefused {
		t.Errorf("reply %v %q, want refused", status, msg)
	}
}

func TestStreamWithAnUnknownHeaderVersionIsAnsweredOtherAndClosed(t *testing.T) {
	a := newTestAgent(t, 80)
	agentEnd, reflectorEnd := net.Pipe()
	defer reflectorEnd.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.serveStream(context.Background(), agentEnd)
	}()
	reflectorEnd.SetDeadline(time.Now().Add(5 * time.Second))
	reflectorEnd.Write([]byte{9, tunnel.KindTCP, 0, 80, 0}) // version 9
	status, msg, err := tunnel.ReadReply(reflectorEnd)
	if err != nil || status != tunnel.StatusOther {
		t.Fatalf("reply %v %q %v, want other", status, msg, err)
	}
	if n, err := reflectorEnd.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read %d, %v; want the stream closed", n, err)
	}
	<-done
}

// The handler over a real smux session, as the reflector drives it, on
// either of the agent's ends.
func TestStreamOverSmux(t *testing.T) {
	for _, stock := range []bool{false, true} {
		t.Run(fmt.Sprintf("stock=%v", stock), func(t *testing.T) {
			echo := echoListener(t)
			a := newTestAgent(t, echo)
			a.opts.StockSmux = stock
			c1, c2 := net.Pipe()
			client, err := a.newSession(c1)
			if err != nil {
				t.Fatal(err)
			}
			server := smuxsession.New(c2, smuxsession.Config{})
			go server.Run()
			defer server.Close()
			done := make(chan error, 1)
			go func() {
				done <- a.serveSession(context.Background(), client)
			}()

			tun := tunnel.NewMuxTunnel(server)
			conn, err := tun.Open(context.Background(), echo, "test")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			echoOnce(t, conn, "over smux")
			if _, err := tun.Open(context.Background(), echo+1, "test"); !errors.Is(err, tunnel.ErrPortNotAllowed) {
				t.Errorf("Open of a port not allowed: %v, want ErrPortNotAllowed", err)
			}
			conn.Close()
			server.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the agent's session did not end after the reflector closed it")
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestDialFailureStatus(t *testing.T) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, Err: err}
	}
	tests := []struct {
		name   string
		err    error
		status tunnel.Status
		msg    string
	}{
		{"refused", opErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), tunnel.StatusRefused, "nothing listening on port 22"},
		{"timeout", opErr(timeoutError{}), tunnel.StatusTimeout, "local connection to port 22 timed out"},
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), tunnel.StatusTimeout, "local connection to port 22 timed out"},
		{"unreachable", opErr(os.NewSyscallError("connect", syscall.ENETUNREACH)), tunnel.StatusOther, syscall.ENETUNREACH.Error()},
		{"dns", opErr(&net.DNSError{Err: "no such host", Name: "plc.internal"}), tunnel.StatusOther, "cannot resolve the device's local address"},
		{"other", errors.New("dial /secret/path: something"), tunnel.StatusOther, "local connection failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := dialFailure(tt.err, 22)
			if status != tt.status || msg != tt.msg {
				t.Errorf("got %v %q, want %v %q", status, msg, tt.status, tt.msg)
			}
			if strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "/") {
				t.Errorf("message %q leaks an address or path", msg)
			}
		})
	}
}

func TestIdleConnClosesAfterTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local, device := net.Pipe()
		defer device.Close()
		go io.Copy(device, device) // echo
		ic := newIdleConn(local, 2*time.Second)
		defer ic.stop()

		buf := make([]byte, 4)
		for range 5 { // traffic every second keeps it open for 5s
			time.Sleep(time.Second)
			if _, err := ic.Write([]byte("ping")); err != nil {
				t.Fatalf("write while active: %v", err)
			}
			if _, err := io.ReadFull(ic, buf); err != nil {
				t.Fatalf("read while active: %v", err)
			}
		}
		start := time.Now()
		_, err := ic.Read(buf)
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("read of an idle connection: %v, want it closed", err)
		}
		if idle := time.Since(start); idle != 2*time.Second {
			t.Errorf("closed after %v idle, want 2s", idle)
		}
	})
}
