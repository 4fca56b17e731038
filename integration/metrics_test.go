package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStatusAndMetricsForBothAgentKinds runs `reflector serve
// --metrics-listen` with a device on our agent (dev1) and one on the real
// WebTunnelAgent (wt1): the start page shows both online with their kind,
// and after bytes carried to each with CONNECT, GET /metrics has the same
// counters for both kinds.
func TestStatusAndMetricsForBothAgentKinds(t *testing.T) {
	metricsPort := freePort(t)
	s := newMacchinaStackWithWT(t, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	scrape := func() string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
		}
		return string(body)
	}
	value := func(text, sample string) int64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\d+)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no sample %s in:\n%s", sample, text)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}

	startPage := signedInStartPage(t, s.port, "alice", alicePass)
	for device, kind := range map[string]string{"dev1": "reflector.v1", "wt1": "webtunnel"} {
		re := `(?s)<tr data-device="` + device + `">.*?<span class="dot on".*?<a class="small" href="https://` + device +
			`\.localhost:\d+/">.*?data-field="agent">` + regexp.QuoteMeta(kind) + `.*?data-field="since">online since `
		if !regexp.MustCompile(re).MatchString(startPage) {
			t.Errorf("start page lacks %s online (%s):\n%s", device, kind, startPage)
		}
	}

	const size = 100_000
	for _, device := range macchinaDevices {
		c := connectVia(t, s.port, "alice", alicePass, fmt.Sprintf("%s.localhost:%d", device, s.echo))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(make([]byte, size))
		if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
			t.Fatalf("%s: %v", device, err)
		}
		c.Close()
		// A port the device does not forward.
		c2, err := tlsDialInsecure(fmt.Sprintf("127.0.0.1:%d", s.port))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c2, "CONNECT %s.localhost:1 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: %s\r\n\r\n", device, basic("alice", alicePass))
		line := make([]byte, 12)
		io.ReadFull(c2, line)
		c2.Close()
		if string(line) != "HTTP/1.1 403" {
			t.Fatalf("%s port 1: %q", device, line)
		}
	}
	var text string
	waitFor(t, func() bool { // streams are counted closed once both ends are done
		text = scrape()
		return value(text, `reflector_streams_open{kind="webtunnel"}`) == 0 &&
			value(text, `reflector_streams_open{kind="reflector.v1"}`) == 0
	})
	// dev1's record lists its ports, so the reflector refuses port 1 before
	// the tunnel; wt1's has none, so the agent's targetPorts decide, in
	// the hub.
	notAllowed := map[string]int64{"reflector.v1": 0, "webtunnel": 1}
	for _, kind := range []string{"reflector.v1", "webtunnel"} {
		l := fmt.Sprintf(`{kind=%q}`, kind)
		if n := value(text, "reflector_devices_connected"+l); n != 1 {
			t.Errorf("%s connected %d", kind, n)
		}
		if n := value(text, fmt.Sprintf(`reflector_stream_opens_total{kind=%q,result="ok"}`, kind)); n != 1 {
			t.Errorf("%s opens ok %d", kind, n)
		}
		if n := value(text, fmt.Sprintf(`reflector_stream_opens_total{kind=%q,result="not_allowed"}`, kind)); n != notAllowed[kind] {
			t.Errorf("%s opens not allowed %d, want %d", kind, n, notAllowed[kind])
		}
		for _, dir := range []string{"from_device", "to_device"} {
			if n := value(text, fmt.Sprintf(`reflector_stream_bytes_total{kind=%q,direction=%q}`, kind, dir)); n != size {
				t.Errorf("%s bytes %s %d, want %d", kind, dir, n, size)
			}
		}
	}
	// By path: the two CONNECTs that carried bytes, and wt1's to port 1,
	// which the record allowed and the agent refused; dev1's was refused
	// before any grant.
	if n := value(text, `reflector_user_streams_total{via="connect"}`); n != 3 {
		t.Errorf("connect streams granted %d, want 3", n)
	}
	if n := value(text, `reflector_user_streams_open{via="connect"}`); n != 0 {
		t.Errorf("connect streams open %d, want 0", n)
	}
	if n := value(text, "process_resident_memory_bytes"); n <= 0 {
		t.Errorf("resident memory %d", n)
	}
	// Not on the TLS listener, and nothing else on this one.
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", metricsPort)); err == nil {
		fmt.Fprint(c, "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
		line := make([]byte, 12)
		io.ReadFull(c, line)
		c.Close()
		if string(line) != "HTTP/1.1 404" {
			t.Errorf("GET /admin on the metrics listener: %q", line)
		}
	}
}

// signedInStartPage signs user in on the admin host (https://localhost:port)
// as a browser does and returns the start page.
func signedInStartPage(t *testing.T, port int, user, password string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := fmt.Sprintf("https://localhost:%d", port)
	req, _ := http.NewRequest(http.MethodPost, base+"/login",
		strings.NewReader(url.Values{"username": {user}, "password": {password}, "next": {"/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("sign in: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return string(body)
}
