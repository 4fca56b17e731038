package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// TestShutdownJoinsEverythingAndWritesLastSeen: when the server's context
// ends (SIGTERM in `reflector serve`) with a device connected and a stream
// open, Run returns only after every goroutine it started has returned —
// listeners, splices, tunnel endpoints, loops — and the device's last-seen
// time, written as its tunnel closes, is in the database. The agent is a
// process, so every goroutine of ours in this process is the server's.
func TestShutdownJoinsEverythingAndWritesLastSeen(t *testing.T) {
	data := t.TempDir()
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: data, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	echo := echoServer(t)
	secret, err := srv.Store().AddDevice(store.Device{ID: "dev1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Store().AddUser("root", "root-pass", store.RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	agentProc := startProc(t, []string{"REFLECTOR_DEVICE_SECRET=" + secret}, "reflector-agent",
		"--reflector", "https://"+srv.Addr().String(), "--device", "dev1",
		"--ports", fmt.Sprint(echo), "--fingerprint", srv.Fingerprint())
	waitFor(t, func() bool { _, ok := srv.Hub().Status("dev1"); return ok })

	// A stream open across the shutdown.
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate().Leaf)
	conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT dev1:%d HTTP/1.1\r\nHost: dev1:%d\r\nProxy-Authorization: %s\r\n\r\n", echo, echo, basic("root", "root-pass"))
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}

	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15 s of its context ending")
	}
	// A goroutine that has signalled its end (closed a done channel, called
	// wg.Done) may still be on its way out for a moment: give them 1 s. One
	// left blocked somewhere is what this looks for.
	left := serverGoroutines()
	for deadline := time.Now().Add(time.Second); left != "" && time.Now().Before(deadline); left = serverGoroutines() {
		time.Sleep(10 * time.Millisecond)
	}
	if left != "" {
		t.Errorf("goroutines of the server still running 1 s after Run returned:\n%s", left)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(br); err != nil {
		t.Errorf("the open stream did not end at shutdown: %v", err)
	}

	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := st.Device("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if d.LastSeen.Before(stopped) {
		t.Errorf("last seen %v, before the shutdown at %v: the disconnect was not written", d.LastSeen, stopped)
	}
	agentProc.stop()
}

// serverGoroutines returns the stacks of goroutines running code of the
// reflector's server side or of the libraries under it; the test's own
// goroutines (this package) are left out.
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "reflector/integration.") || strings.Contains(g, "testing.") {
			continue
		}
		for _, pkg := range []string{"github.com/reflector-dev/reflector/", "github.com/xtaci/smux", "github.com/gorilla/websocket", "go.etcd.io/bbolt", "net/http.(*conn).serve"} {
			if strings.Contains(g, pkg) {
				left = append(left, g)
				break
			}
		}
	}
	return strings.Join(left, "\n\n")
}
