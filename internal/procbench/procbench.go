// Package procbench measures the paths users take as real processes
// (issue 21): a `reflector serve`, a `reflector-agent`, a device-side
// server and a load generator, each a process of its own on loopback, as
// deployed. In the same run it sends the same load to the device server
// directly, through two plain TCP relays (the floor: the reflector's path
// has the same two extra processes and loopback hops, without TLS,
// multiplexing or checks), and through frp and chisel when their binaries
// are given. It reports throughput, round trips, opens, HTTP requests per
// second and latency (with wrk), and the CPU the reflector and the agent
// spend per GB and per request, read from /proc.
//
// The load generator, the device server and the relays are this package's
// roles (DeviceMain, LoadMain, RelayMain), run as processes of the binary
// that calls Run (integration/procbench), so that no two parties share a
// Go scheduler. docs/performance.md has the command and the table.
package procbench

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reflector-dev/reflector/internal/procstat"
)

// Config says what to measure and with which binaries.
type Config struct {
	Reflector, Agent string // our binaries (cmd/reflector, cmd/reflector-agent)
	Self             string // the binary with the roles: its first argument names one (device, load, relay)
	Wrk              string // wrk, for the HTTP rows; "" leaves them out
	FRPS, FRPC       string // frp's binaries; "" leaves frp out
	Chisel           string // chisel's binary; "" leaves chisel out
	Duration         time.Duration
	Runs             int    // each measurement this many times, interleaved; the medians are reported
	Work             string // directory for data, configuration and logs
	Progress         io.Writer
	// Tests and Systems, if not empty, keep only the tests and systems
	// whose names contain one of their words (to profile one path); direct
	// is always measured.
	Tests, Systems []string
	// ServeArgs and AgentArgs are more flags for reflector serve and
	// reflector-agent (e.g. --pprof-listen).
	ServeArgs, AgentArgs []string
}

// keep reports whether name contains one of words, or words is empty.
func keep(words []string, name string) bool {
	return len(words) == 0 || slices.ContainsFunc(words, func(w string) bool { return strings.Contains(name, w) })
}

// test is one row of the table.
type test struct {
	name, unit string
	load       string // LoadMain's -test; "" for an HTTP test
	conns      int    // wrk's connections for an HTTP test
	latency    bool   // the figure is a p50 latency (lower is better), else a rate
}

var tests = []test{
	{name: "download, 1 stream", unit: "MB/s", load: "download"},
	{name: "upload, 1 stream", unit: "MB/s", load: "upload"},
	{name: "download, 8 streams", unit: "MB/s", load: "parallel8"},
	{name: "64-byte round trip, p50", unit: "µs", load: "rtt", latency: true},
	{name: "open → first byte, p50", unit: "µs", load: "open", latency: true},
	{name: "HTTP GET 1 KiB, 32 connections", unit: "req/s", conns: 32},
	{name: "HTTP GET 1 KiB, 1 connection, p50", unit: "µs", conns: 1, latency: true},
}

// system is one column: a way to reach the device server.
type system struct {
	name   string
	stream *dialer  // nil: no stream rows
	http   *httpWay // nil: no HTTP rows
	// cpu names the processes of the path whose CPU is reported.
	cpu map[string]int
}

// httpWay is how wrk reaches the device's web server: url, and a Lua
// script that sets headers (or the request's target), if any.
type httpWay struct {
	url, script string
}

// Result holds every figure: Figures[test][system] over the runs, and the
// CPU of each measured process per GB or per request.
type Result struct {
	Systems []string
	Tests   []string
	Units   []string
	Figures map[string]map[string][]float64
	// CPU[test][system/process]: µs of CPU per MB (stream tests) or per
	// request (HTTP tests), over the runs.
	CPU map[string]map[string][]float64
	// Failures are the HTTP requests that did not succeed, per measurement.
	Failures []string
}

// Run starts the processes, measures, stops them and returns the figures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	var procs procSet
	defer func() { procs.stopAll() }() // the processes started from here on

	dev, err := procs.startRole(cfg, "device", "device")
	if err != nil {
		return nil, err
	}
	tcpPort, httpPort := dev.vars["tcp"], dev.vars["http"]
	direct := fmt.Sprintf("127.0.0.1:%s", tcpPort)
	systems := []system{{
		name:   "direct",
		stream: &dialer{addr: direct},
		http:   &httpWay{url: "http://127.0.0.1:" + httpPort + "/"},
	}}

	relays, err := startRelays(cfg, &procs, direct, "127.0.0.1:"+httpPort)
	if err != nil {
		return nil, err
	}
	systems = append(systems, relays)

	ours, err := startOurs(ctx, cfg, &procs, tcpPort, httpPort)
	if err != nil {
		return nil, err
	}
	systems = append(systems, ours...)

	if cfg.FRPS != "" && cfg.FRPC != "" {
		frp, err := startFRP(ctx, cfg, &procs, tcpPort, httpPort)
		if err != nil {
			return nil, err
		}
		systems = append(systems, frp)
	}
	if cfg.Chisel != "" {
		ch, err := startChisel(ctx, cfg, &procs, tcpPort, httpPort)
		if err != nil {
			return nil, err
		}
		systems = append(systems, ch)
	}

	res := &Result{Figures: map[string]map[string][]float64{}, CPU: map[string]map[string][]float64{}}
	for _, s := range systems {
		res.Systems = append(res.Systems, s.name)
	}
	var keepTests []test
	for _, t := range tests {
		if (t.load == "" && cfg.Wrk == "") || !keep(cfg.Tests, t.name) {
			continue
		}
		keepTests = append(keepTests, t)
		res.Tests, res.Units = append(res.Tests, t.name), append(res.Units, t.unit)
		res.Figures[t.name], res.CPU[t.name] = map[string][]float64{}, map[string][]float64{}
	}
	for run := range cfg.Runs {
		for _, t := range keepTests {
			for _, s := range systems {
				if s.name != "direct" && !keep(cfg.Systems, s.name) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return res, err
				}
				fig, work, cpu, failures, err := measure(ctx, cfg, t, s)
				if errors.Is(err, errSkip) {
					continue
				}
				if err != nil {
					return res, fmt.Errorf("%s, %s, run %d: %w", t.name, s.name, run+1, err)
				}
				fmt.Fprintf(cfg.Progress, "run %d: %-36s %-14s %10.1f %s\n", run+1, t.name, s.name, fig, t.unit)
				res.Figures[t.name][s.name] = append(res.Figures[t.name][s.name], fig)
				if failures != "" {
					note := fmt.Sprintf("run %d, %s, %s: %s", run+1, t.name, s.name, failures)
					fmt.Fprintln(cfg.Progress, note)
					res.Failures = append(res.Failures, note)
				}
				for proc, d := range cpu {
					if work > 0 {
						res.CPU[t.name][s.name+"/"+proc] = append(res.CPU[t.name][s.name+"/"+proc], float64(d.Microseconds())/work)
					}
				}
			}
		}
	}
	return res, nil
}

// errSkip: the system does not offer the test's path.
var errSkip = errors.New("not offered")

// measure runs test t against system s: its figure, the work done (MB or
// requests) and the CPU each of s's processes spent on it.
func measure(ctx context.Context, cfg Config, t test, s system) (fig, work float64, cpu map[string]time.Duration, failures string, err error) {
	before := map[string]time.Duration{}
	for name, pid := range s.cpu {
		if before[name], err = procstat.CPU(pid); err != nil {
			return 0, 0, nil, "", err
		}
	}
	if t.load != "" {
		if s.stream == nil {
			return 0, 0, nil, "", errSkip
		}
		var r loadResult
		r, err = runLoad(ctx, cfg, t.load, *s.stream)
		if err != nil {
			return 0, 0, nil, "", err
		}
		if t.latency {
			fig, work = r.P50us, float64(r.Ops)
		} else {
			fig, work = float64(r.Bytes)/1e6/r.Seconds, float64(r.Bytes)/1e6
		}
	} else {
		if s.http == nil {
			return 0, 0, nil, "", errSkip
		}
		var w wrkResult
		w, err = runWrk(ctx, cfg, *s.http, t.conns)
		if err != nil {
			return 0, 0, nil, "", err
		}
		fig, work = w.rps, float64(w.requests)
		if t.latency {
			fig = w.p50us
		}
		if w.failed > 0 {
			failures = fmt.Sprintf("%d of %d requests failed (%s)", w.failed, w.requests, w.why)
		}
	}
	cpu = map[string]time.Duration{}
	for name, pid := range s.cpu {
		after, err := procstat.CPU(pid)
		if err != nil {
			return 0, 0, nil, "", err
		}
		cpu[name] = after - before[name]
	}
	return fig, work, cpu, failures, nil
}

// runLoad runs a load generator process for one stream test.
func runLoad(ctx context.Context, cfg Config, name string, d dialer) (loadResult, error) {
	args := []string{"load", "-test", name, "-duration", cfg.Duration.String(), "-addr", d.addr}
	if d.target != "" {
		args = append(args, "-connect", d.target)
	}
	if d.tls {
		args = append(args, "-tls")
	}
	if d.auth != "" {
		args = append(args, "-auth", d.auth)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.Self, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load generator: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		return loadResult{}, fmt.Errorf("load generator's output %q: %w", out, err)
	}
	return r, nil
}

// wrkResult is what wrk printed.
type wrkResult struct {
	rps      float64
	requests int64
	p50us    float64
	failed   int64  // answers other than 2xx and 3xx
	why      string // what some of them said
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkP50      = regexp.MustCompile(`\s50%\s+([0-9.]+)(us|ms|s)\b`)
	wrkFailed   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkErrors   = regexp.MustCompile(`Socket errors: .*`)
)

// runWrk runs wrk with conns connections against way.
func runWrk(ctx context.Context, cfg Config, way httpWay, conns int) (wrkResult, error) {
	threads := min(conns, users)
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%.0fs", max(1, cfg.Duration.Seconds())), "--latency"}
	if way.script != "" {
		args = append(args, "-s", way.script)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cfg.Wrk, append(args, way.url)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	if m := wrkErrors.FindSubmatch(out); m != nil {
		return wrkResult{}, fmt.Errorf("wrk: %s", m[0])
	}
	var r wrkResult
	if m := wrkFailed.FindSubmatch(out); m != nil {
		// Counted and reported, not fatal: a failure under load is a
		// finding of the run.
		r.failed, _ = strconv.ParseInt(string(m[1]), 10, 64)
		r.why = statuses(ctx, cfg, way, conns)
	}
	m := wrkRPS.FindSubmatch(out)
	n := wrkRequests.FindSubmatch(out)
	p := wrkP50.FindSubmatch(out)
	if m == nil || n == nil || p == nil {
		return wrkResult{}, fmt.Errorf("wrk's output: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	r.requests, _ = strconv.ParseInt(string(n[1]), 10, 64)
	r.p50us, _ = strconv.ParseFloat(string(p[1]), 64)
	switch string(p[2]) {
	case "ms":
		r.p50us *= 1e3
	case "s":
		r.p50us *= 1e6
	}
	return r, nil
}

// statuses runs wrk once more for a second, printing the status and body
// of every answer but 200, to say what failed.
func statuses(ctx context.Context, cfg Config, way httpWay, conns int) string {
	text := ""
	if way.script != "" {
		b, err := os.ReadFile(way.script)
		if err != nil {
			return ""
		}
		text = string(b)
	}
	script, err := writeScript(cfg, "statuses.lua", text+`
function response(status, headers, body) if status ~= 200 then io.write("status " .. status .. ": " .. body .. "\n") end end
`)
	if err != nil {
		return ""
	}
	out, _ := exec.CommandContext(ctx, cfg.Wrk, "-t", strconv.Itoa(min(conns, users)), "-c", strconv.Itoa(conns), "-d", "1s", "-s", script, way.url).CombinedOutput()
	var bad []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "status ") && len(bad) < 5 {
			bad = append(bad, strings.TrimSpace(line))
		}
	}
	if len(bad) == 0 {
		return "none failed in a second run of a second"
	}
	return strings.Join(bad, "; ")
}

// startRelays starts two relays in a row to each of the device server's
// ports.
func startRelays(cfg Config, procs *procSet, tcp, web string) (system, error) {
	chain := func(to string) (string, error) {
		for i := range 2 {
			r, err := procs.startRole(cfg, fmt.Sprintf("relay-%d", i), "relay", "-to", to)
			if err != nil {
				return "", err
			}
			to = "127.0.0.1:" + r.vars["port"]
		}
		return to, nil
	}
	t, err := chain(tcp)
	if err != nil {
		return system{}, err
	}
	w, err := chain(web)
	if err != nil {
		return system{}, err
	}
	return system{name: "2 relays", stream: &dialer{addr: t}, http: &httpWay{url: "http://" + w + "/"}}, nil
}

var (
	tokenLine  = regexp.MustCompile(`token \(shown once\): (rfl_\S+)`)
	secretLine = regexp.MustCompile(`secret \(shown once\): (\S+)`)
	pinLine    = regexp.MustCompile(`fingerprint: (sha256:[0-9a-f]{64})`)
)

// startOurs provisions a data directory (a user with a token, a device
// with the device server's two ports), starts `reflector serve` with a
// plain proxy listener beside its TLS one and the agent, and waits for the
// device to be reachable. It returns two columns: CONNECT over TLS and
// device-host requests (https, bearer token), and CONNECT and
// absolute-form on the plain proxy listener.
func startOurs(ctx context.Context, cfg Config, procs *procSet, tcpPort, httpPort string) ([]system, error) {
	data := filepath.Join(cfg.Work, "reflector-data")
	admin := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, cfg.Reflector, append(args, "--data", data)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("reflector %s: %w: %s", args[0], err, out)
		}
		return string(out), nil
	}
	// wrk's 32 connections come from users threads of 8: one user may
	// have proxy.MaxUserStreams (15) requests in flight at one device.
	var tokens []string
	for i := range users {
		user := fmt.Sprintf("bench%d", i)
		if _, err := admin("user", "add", user, "--admin"); err != nil {
			return nil, err
		}
		out, err := admin("token", "create", "--user", user, "--name", "bench")
		if err != nil {
			return nil, err
		}
		m := tokenLine.FindStringSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("reflector token create printed no token: %s", out)
		}
		tokens = append(tokens, user+":"+m[1])
	}
	out, err2 := admin("device", "add", "dev1", "--ports", tcpPort+","+httpPort, "--http-port", httpPort)
	if err2 != nil {
		return nil, err2
	}
	secret := secretLine.FindStringSubmatch(out)
	if secret == nil {
		return nil, fmt.Errorf("reflector device add printed no secret: %s", out)
	}
	port, proxyPort := freePort(), freePort()
	if port == 0 || proxyPort == 0 {
		return nil, errors.New("no free port")
	}
	srv, err := procs.start(cfg, "reflector", nil, cfg.Reflector, append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", proxyPort), "--data", data, "--log-level", "warn"}, cfg.ServeArgs...)...)
	if err != nil {
		return nil, err
	}
	pin, err := srv.await(pinLine, time.Minute)
	if err != nil {
		return nil, err
	}
	agent, err := procs.start(cfg, "agent", []string{"REFLECTOR_DEVICE_SECRET=" + secret[1]}, cfg.Agent, append([]string{
		"--reflector", fmt.Sprintf("https://127.0.0.1:%d", port), "--fingerprint", pin, "--device", "dev1",
		"--ports", tcpPort + "," + httpPort, "--http-port", httpPort, "--log-level", "warn"}, cfg.AgentArgs...)...)
	if err != nil {
		return nil, err
	}
	target := "dev1.localhost:" + tcpPort
	tlsWay := dialer{addr: fmt.Sprintf("127.0.0.1:%d", port), target: target, tls: true, auth: tokens[0]}
	if err := waitReachable(ctx, tlsWay); err != nil {
		return nil, fmt.Errorf("the device never came online: %w", err)
	}
	cpu := map[string]int{"reflector": srv.cmd.Process.Pid, "agent": agent.cmd.Process.Pid}
	var bearers, basics []string
	for _, t := range tokens {
		_, token, _ := strings.Cut(t, ":")
		bearers = append(bearers, `"Bearer `+token+`"`)
		basics = append(basics, `"Basic `+base64.StdEncoding.EncodeToString([]byte(t))+`"`)
	}
	sub, err := writeScript(cfg, "subdomain.lua", fmt.Sprintf(`wrk.headers["Host"] = "dev1.localhost:%d"
%s
function init(args) wrk.headers["X-Reflector-Authorization"] = auth end
`, port, perThread(bearers)))
	if err != nil {
		return nil, err
	}
	abs, err := writeScript(cfg, "absolute.lua", fmt.Sprintf(`wrk.path = "http://dev1.localhost/"
%s
function init(args) wrk.headers["Proxy-Authorization"] = auth end
`, perThread(basics)))
	if err != nil {
		return nil, err
	}
	plain := tlsWay
	plain.addr, plain.tls = fmt.Sprintf("127.0.0.1:%d", proxyPort), false
	return []system{
		{name: "ours (TLS)", stream: &tlsWay, http: &httpWay{url: fmt.Sprintf("https://127.0.0.1:%d/", port), script: sub}, cpu: cpu},
		{name: "ours (plain)", stream: &plain, http: &httpWay{url: fmt.Sprintf("http://127.0.0.1:%d/", proxyPort), script: abs}, cpu: cpu},
	}, nil
}

// users is how many users (and wrk threads) the HTTP rows use.
const users = 4

// perThread is wrk Lua that gives each thread one of values, a Lua string
// expression, as its global auth.
func perThread(values []string) string {
	return fmt.Sprintf(`local values = {%s}
local n = 0
function setup(thread) n = n + 1; thread:set("auth", values[(n - 1) %% #values + 1]) end`, strings.Join(values, ", "))
}

// startFRP starts frps with a tcpmux (HTTP CONNECT) port and a vhost HTTP
// port, and frpc with a proxy of each kind to the device server.
func startFRP(ctx context.Context, cfg Config, procs *procSet, tcpPort, httpPort string) (system, error) {
	bind, mux, vhost := freePort(), freePort(), freePort()
	server, err := writeScript(cfg, "frps.toml", fmt.Sprintf(`bindAddr = "127.0.0.1"
bindPort = %d
tcpmuxHTTPConnectPort = %d
vhostHTTPPort = %d
`, bind, mux, vhost))
	if err != nil {
		return system{}, err
	}
	client, err := writeScript(cfg, "frpc.toml", fmt.Sprintf(`serverAddr = "127.0.0.1"
serverPort = %d

[[proxies]]
name = "dev1-tcp"
type = "tcpmux"
multiplexer = "httpconnect"
customDomains = ["dev1"]
localIP = "127.0.0.1"
localPort = %s

[[proxies]]
name = "dev1-web"
type = "http"
customDomains = ["dev1"]
localIP = "127.0.0.1"
localPort = %s
`, bind, tcpPort, httpPort))
	if err != nil {
		return system{}, err
	}
	frps, err := procs.start(cfg, "frps", nil, cfg.FRPS, "-c", server)
	if err != nil {
		return system{}, err
	}
	if err := waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", bind)); err != nil {
		return system{}, fmt.Errorf("frps: %w", err)
	}
	frpc, err := procs.start(cfg, "frpc", nil, cfg.FRPC, "-c", client)
	if err != nil {
		return system{}, err
	}
	d := dialer{addr: fmt.Sprintf("127.0.0.1:%d", mux), target: "dev1:" + tcpPort}
	if err := waitReachable(ctx, d); err != nil {
		return system{}, fmt.Errorf("frp: %w", err)
	}
	host, err := writeScript(cfg, "frp.lua", `wrk.headers["Host"] = "dev1"`+"\n")
	if err != nil {
		return system{}, err
	}
	return system{name: "frp", stream: &d, http: &httpWay{url: fmt.Sprintf("http://127.0.0.1:%d/", vhost), script: host},
		cpu: map[string]int{"server": frps.cmd.Process.Pid, "client": frpc.cmd.Process.Pid}}, nil
}

// startChisel starts a chisel server with reverse forwarding and a chisel
// client that forwards a server-side port to each of the device server's.
func startChisel(ctx context.Context, cfg Config, procs *procSet, tcpPort, httpPort string) (system, error) {
	bind, t, w := freePort(), freePort(), freePort()
	server, err := procs.start(cfg, "chisel-server", nil, cfg.Chisel, "server", "--host", "127.0.0.1", "--port", strconv.Itoa(bind), "--reverse")
	if err != nil {
		return system{}, err
	}
	if err := waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", bind)); err != nil {
		return system{}, fmt.Errorf("chisel server: %w", err)
	}
	client, err := procs.start(cfg, "chisel-client", nil, cfg.Chisel, "client", fmt.Sprintf("http://127.0.0.1:%d", bind),
		fmt.Sprintf("R:127.0.0.1:%d:127.0.0.1:%s", t, tcpPort), fmt.Sprintf("R:127.0.0.1:%d:127.0.0.1:%s", w, httpPort))
	if err != nil {
		return system{}, err
	}
	d := dialer{addr: fmt.Sprintf("127.0.0.1:%d", t)}
	if err := waitReachable(ctx, d); err != nil {
		return system{}, fmt.Errorf("chisel: %w", err)
	}
	return system{name: "chisel", stream: &d, http: &httpWay{url: fmt.Sprintf("http://127.0.0.1:%d/", w)},
		cpu: map[string]int{"server": server.cmd.Process.Pid, "client": client.cmd.Process.Pid}}, nil
}

// waitReachable opens streams through d until one reaches the device
// server, for up to 30 s.
func waitReachable(ctx context.Context, d dialer) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := d.dial()
		if err == nil {
			_, err = c.Write([]byte{modeOpen})
			if err == nil {
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err = io.ReadFull(c, make([]byte, 1))
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitListening waits until addr accepts a connection, for up to 30 s.
func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort is a loopback port nothing listens on now; 0 if none was found.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeScript(cfg Config, name, text string) (string, error) {
	p := filepath.Join(cfg.Work, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}

// proc is a process of the run, its standard output scanned for lines.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.Closer
	vars  map[string]string // key=value words of its first line (roles)
	lines chan string
	done  chan struct{}
}

// procSet is the run's processes, stopped together.
type procSet []*proc

// start starts bin with args (env added to the environment), its standard
// error in the work directory's name.log.
func (s *procSet) start(cfg Config, name string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(cfg.Work, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 16), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = logf
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.stdin = stdin
	*s = append(*s, p)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case p.lines <- sc.Text():
			default: // nobody waits for more
			}
		}
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// startRole starts one of this package's roles as a process and reads the
// key=value words of the first line it prints.
func (s *procSet) startRole(cfg Config, name, role string, args ...string) (*proc, error) {
	p, err := s.start(cfg, name, nil, cfg.Self, append([]string{role}, args...)...)
	if err != nil {
		return nil, err
	}
	select {
	case line := <-p.lines:
		p.vars = map[string]string{}
		for _, w := range strings.Fields(line) {
			if k, v, ok := strings.Cut(w, "="); ok {
				p.vars[k] = v
			}
		}
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start (%v); see %s.log", name, p.cmd.ProcessState, name)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s printed nothing within 30 s", name)
	}
}

// await waits for a line of p matching re and returns its first group.
func (p *proc) await(re *regexp.Regexp, limit time.Duration) (string, error) {
	timeout := time.After(limit)
	for {
		select {
		case line := <-p.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m[1], nil
			}
		case <-p.done:
			return "", fmt.Errorf("%s exited (%v); see %s.log", p.name, p.cmd.ProcessState, p.name)
		case <-timeout:
			return "", fmt.Errorf("%s: nothing matching %s within %s", p.name, re, limit)
		}
	}
}

// stopAll asks every process to end (standard input closed, SIGTERM) and
// kills those left after 10 s, newest first.
func (s procSet) stopAll() {
	for _, p := range slices.Backward(s) {
		p.stdin.Close()
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range s {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}
