package enroll

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSlowEnrolmentBodyIsCutAtTheDeadline is the attack of issue 15, item 7
// on /enroll/v1, which anybody may POST to: a request that announces a
// body and sends none held its connection and a goroutine for as long as
// the client liked. It now gets 408 once bodyTimeout has passed, and the
// connection is closed.
func TestSlowEnrolmentBodyIsCutAtTheDeadline(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 200 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	r := newTestReflector(t)
	conn, err := tls.Dial("tcp", r.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	// Before srv.Close, which waits for the handler reading this body.
	t.Cleanup(func() { conn.Close() })
	start := time.Now()
	conn.SetDeadline(start.Add(5 * time.Second)) // the test's own limit
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: reflector\r\nContent-Type: application/json\r\n"+
		"Content-Length: 4000\r\n\r\n{\"key\":", Path)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("POST /enroll/v1 with a body that never comes: no answer in 5 s")
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || took > 2*time.Second || !strings.Contains(string(body), "in time") {
		t.Errorf("body that never comes: %s %q after %v, want 408 after about %v", resp.Status, body, took, bodyTimeout)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection stays open after the 408 (%v)", err)
	}
}
