package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/store"
)

// bigHeaderDevice adds pump-17 (group ops), whose web server answers with
// about ?kib=N KiB of response headers.
func bigHeaderDevice(f *subdomainFixture) {
	f.addDevice(store.Device{ID: "pump-17", Groups: []string{"ops"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kib, _ := strconv.Atoi(r.URL.Query().Get("kib"))
		for i := range kib / 16 {
			w.Header().Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("a", 16<<10))
		}
		io.WriteString(w, "ok")
	}))
}

// TestDeviceResponseHeadersOver1MiBAre502 (issue 15, item 7): the
// Transport read up to Go's default of 10 MiB of a device's response
// header into memory, per request. Beyond 1 MiB the user now gets 502, on
// a device host and through the proxy alike.
func TestDeviceResponseHeadersOver1MiBAre502(t *testing.T) {
	f := newWTClientFixture(t)
	bigHeaderDevice(f)
	for _, tc := range []struct {
		kib    int
		status int
	}{{512, http.StatusOK}, {2048, http.StatusBadGateway}} {
		resp := f.get(fmt.Sprintf("https://pump-17.localhost/?kib=%d", tc.kib), "root")
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != tc.status {
			t.Errorf("device host, %d KiB of response headers: %s, want %d", tc.kib, resp.Status, tc.status)
		}
		if got := absoluteGet(t, f, fmt.Sprintf("http://pump-17.localhost/?kib=%d", tc.kib)); got != tc.status {
			t.Errorf("absolute-form, %d KiB of response headers: %d, want %d", tc.kib, got, tc.status)
		}
	}
}

// TestDeviceResponseHeadersTooLargeSaysSo: the 502 for a device response
// whose headers pass the limit said "cannot reach device", which sends the
// user looking for a network fault; it names what happened, on both paths.
func TestDeviceResponseHeadersTooLargeSaysSo(t *testing.T) {
	f := newWTClientFixture(t)
	bigHeaderDevice(f)
	resp := f.get("https://pump-17.localhost/?kib=2048", "root")
	body := readBody(t, resp)
	const want = "response headers are too large"
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
		t.Errorf("device host: %d %q, want 502 saying %q", resp.StatusCode, body, want)
	}
	abs := absoluteGetAs(t, f, "http://pump-17.localhost/?kib=2048", "alice")
	if body := readBody(t, abs); abs.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
		t.Errorf("absolute-form: %d %q, want 502 saying %q", abs.StatusCode, body, want)
	}
}

// absoluteGet sends GET url in absolute form through the proxy as alice
// and returns the status.
func absoluteGet(t *testing.T, f *subdomainFixture, url string) int {
	t.Helper()
	return absoluteGetAs(t, f, url, "alice").StatusCode
}

// absoluteGetAs sends GET url in absolute form through the proxy as user
// (password user-pw) and returns the response, its body read.
func absoluteGetAs(t *testing.T, f *subdomainFixture, url, user string) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", f.front.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: pump-17.localhost\r\nProxy-Authorization: %s\r\n\r\n", url, basic(user, user+"-pw"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}
