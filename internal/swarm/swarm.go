// Package swarm measures what a fleet of idle devices costs a real
// `reflector serve` process: it provisions N devices (or reuses a fleet
// provisioned before), starts the reflector, connects N simulated agents
// from this process (our agent package, or a simulated WebTunnelAgent),
// each from its own loopback address, and reports the time until all are
// connected, the reflector's resident memory and CPU through /proc, and,
// with Restart, the storm after the reflector is killed with SIGKILL and
// started again on the same data. integration/swarm is its command.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/procstat"
)

// Wire is the protocol the simulated agents speak.
type Wire string

const (
	// Ours is our own wire: the agent package, smux over a WebSocket.
	Ours Wire = "reflector"
	// WebTunnel is macchina.io's WebTunnel wire, as WebTunnelAgent speaks it.
	WebTunnel Wire = "webtunnel"
)

// Secrets is how devices are provisioned.
type Secrets string

const (
	// Generated secrets are made by `device add` (128 random bits, checked
	// by SHA-256).
	Generated Secrets = "generated"
	// Adopted secrets are the device's own passwords, given to `device
	// import` (checked by argon2id).
	Adopted Secrets = "adopted"
)

// Config is one swarm run. Zero values are the defaults documented on each
// field.
type Config struct {
	// Devices is the number of simulated agents and devices (required).
	Devices int
	// Wire is the agents' protocol; default Ours.
	Wire Wire
	// Secrets is how devices are provisioned; default Generated.
	Secrets Secrets
	// Reflector is the path of the reflector binary (required).
	Reflector string
	// ServeArgs are more flags for `reflector serve`.
	ServeArgs []string
	// Cache, if set, keeps provisioned fleets (a data directory and the
	// devices' secrets) in Cache/<secrets>-<devices> for later runs; each run
	// works on a copy. Empty provisions into WorkDir and keeps nothing.
	Cache string
	// WorkDir holds the run's copy of the data and the reflector's log;
	// default a temporary directory, removed after a run that succeeded.
	WorkDir string
	// Restart kills the reflector with SIGKILL once all are connected and
	// the idle window has passed, starts it again on the same data and
	// port, and measures the reconnect storm.
	Restart bool
	// Idle is the window, after all are connected, over which idle CPU
	// and memory are measured; default 60 s (six of smux's 10 s
	// keep-alives). Zero means the default; use a small positive value in
	// tests.
	Idle time.Duration
	// Timeout bounds each storm (cold start, restart); default 10 min.
	Timeout time.Duration
	// Backoff are the reconnect delays of every agent; zero fields are our
	// agent's defaults.
	Backoff Backoff
	// Progress, if set, gets a line about every second.
	Progress io.Writer
	// ProvisionOnly stops after provisioning: with Cache, a fleet is made
	// ready ahead of the runs that measure.
	ProvisionOnly bool
}

func (c *Config) validate() error {
	if c.Devices <= 0 {
		return errors.New("swarm: Devices must be positive")
	}
	if c.Reflector == "" {
		return errors.New("swarm: no reflector binary")
	}
	switch c.Wire {
	case "":
		c.Wire = Ours
	case Ours, WebTunnel:
	default:
		return fmt.Errorf("swarm: wire %q: want %s or %s", c.Wire, Ours, WebTunnel)
	}
	switch c.Secrets {
	case "":
		c.Secrets = Generated
	case Generated, Adopted:
	default:
		return fmt.Errorf("swarm: secrets %q: want %s or %s", c.Secrets, Generated, Adopted)
	}
	if c.Idle <= 0 {
		c.Idle = time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	c.Backoff.defaults()
	return nil
}

// Result holds the figures of a run. Memory is in KiB, CPU in seconds of
// one core.
type Result struct {
	Devices   int     `json:"devices"`
	Wire      Wire    `json:"wire"`
	Secrets   Secrets `json:"secrets"`
	Reflector string  `json:"reflector"`
	// ProvisionSeconds is how long provisioning took; 0 when the fleet came
	// from the cache.
	ProvisionSeconds float64 `json:"provision_seconds"`
	// BaseRSSKiB is the reflector's resident memory before any agent
	// connected.
	BaseRSSKiB int64 `json:"base_rss_kib"`
	Cold       Storm `json:"cold"`
	Idle       Idle  `json:"idle"`
	// Restart is the storm after the SIGKILL; nil without Config.Restart.
	Restart  *Storm   `json:"restart,omitempty"`
	Timeline []Sample `json:"timeline"`
}

// Storm is the figures of the fleet connecting at once: the cold start,
// or the reconnect after a restart.
type Storm struct {
	// Seconds from the start (of the agents for a cold start, of the new
	// reflector process after a restart) until all were connected, or
	// until the timeout.
	Seconds float64 `json:"seconds"`
	// SinceKillSeconds is, after a restart, the time from the SIGKILL.
	SinceKillSeconds float64 `json:"since_kill_seconds,omitempty"`
	// Connected is how many were connected at the end: Devices unless the
	// storm timed out.
	Connected int `json:"connected"`
	// Failures counts the agents' failed attempts during the storm.
	Failures int64 `json:"failures"`
	// Reflector is the reflector's own count of connected devices once all
	// agents were (reflector_devices_connected, waited for up to 5 s); -1
	// when the binary has no metrics listener.
	Reflector int `json:"reflector_connected"`
	// FailureKinds are their causes, commonest first.
	FailureKinds []FailureKind `json:"failure_kinds,omitempty"`
	// PeakRSSKiB is the reflector process's VmHWM at the end of the storm.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// RSSKiB is its VmRSS at the end.
	RSSKiB int64 `json:"rss_kib"`
	// CPUSeconds is the CPU time the reflector used during the storm.
	CPUSeconds float64 `json:"cpu_seconds"`
	// SwarmCPUSeconds is the CPU time the swarm's own agents used meanwhile
	// (TLS handshakes mostly): on a machine of few cores they compete with
	// the reflector.
	SwarmCPUSeconds float64 `json:"swarm_cpu_seconds"`
}

// FailureKind is one cause of failed attempts and how often it occurred.
type FailureKind struct {
	Cause string `json:"cause"`
	Count int64  `json:"count"`
}

// Idle is the figures of the idle window after the cold start.
type Idle struct {
	Seconds float64 `json:"seconds"`
	// CPUPercent is the reflector's CPU over the window, in % of one core.
	CPUPercent float64 `json:"cpu_percent"`
	// RSSKiB is the reflector's VmRSS at the end of the window.
	RSSKiB int64 `json:"rss_kib"`
	// PerDeviceKiB is (RSSKiB - BaseRSSKiB) / Devices.
	PerDeviceKiB float64 `json:"per_device_kib"`
	// Drops counts tunnels that ended during the window (0 when idle
	// tunnels survive their keep-alives).
	Drops int64 `json:"drops"`
}

// Sample is one progress line.
type Sample struct {
	Seconds   float64 `json:"t"`
	Phase     string  `json:"phase"`
	Connected int64   `json:"connected"`
	// Reflector is the reflector's own count of connected devices
	// (reflector_devices_connected), -1 when it has no metrics listener.
	Reflector  int     `json:"reflector_connected"`
	Failures   int64   `json:"failures"`
	RSSKiB     int64   `json:"rss_kib"`
	CPUPercent float64 `json:"cpu_percent"`
}

// Run provisions (or reuses) the fleet, runs the swarm and returns its
// figures. An error after the cold start has begun comes with the figures
// measured so far.
func Run(ctx context.Context, cfg Config) (_ *Result, err error) {
	var logged bool // work holds a log
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := checkFileLimit(cfg.Devices); err != nil {
		return nil, err
	}
	work := cfg.WorkDir
	if work == "" {
		dir, mkErr := os.MkdirTemp("", "swarm-")
		if mkErr != nil {
			return nil, fmt.Errorf("swarm: %w", mkErr)
		}
		work = dir
		// Kept only when it holds the log of a failure, which the error
		// names.
		defer func() {
			if err == nil || !logged {
				os.RemoveAll(work)
			}
		}()
	}
	res := &Result{Devices: cfg.Devices, Wire: cfg.Wire, Secrets: cfg.Secrets, Reflector: cfg.Reflector}
	logged = cfg.Cache == "" // provisioning logs into work
	src, devs, took, err := provisioned(ctx, cfg, work)
	if err != nil {
		return nil, err
	}
	res.ProvisionSeconds = took.Seconds()
	if cfg.ProvisionOnly {
		return res, nil
	}
	data := filepath.Join(work, "data")
	if err := os.RemoveAll(data); err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	if err := copyData(src, data); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, res: res, data: data, devs: devs, fleet: newFleet(cfg.Devices), t0: time.Now()}
	if r.logf, err = os.Create(filepath.Join(work, "reflector.log")); err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	defer r.logf.Close()
	logged = true
	if err = r.run(ctx); err != nil {
		err = fmt.Errorf("%w (reflector log: %s)", err, r.logf.Name())
	}
	return res, err
}

// run is the state of one Run once the fleet is provisioned.
type run struct {
	cfg   Config
	res   *Result
	data  string
	devs  []device
	fleet *fleet
	logf  *os.File
	t0    time.Time

	port, metricsPort int
	proc              atomic.Pointer[reflectorProc]
	phase             atomic.Value // string
}

func (r *run) run(ctx context.Context) error {
	var err error
	if r.port, err = freePort(); err != nil {
		return err
	}
	if supportsFlag(r.cfg.Reflector, "metrics-listen") {
		if r.metricsPort, err = freePort(); err != nil {
			return err
		}
	}
	r.phase.Store("start")
	p, err := r.start(ctx)
	if err != nil {
		return err
	}
	defer func() { r.proc.Load().stop() }()
	progressDone := make(chan struct{})
	progressCtx, stopProgress := context.WithCancel(ctx)
	go func() { r.progress(progressCtx); close(progressDone) }()
	defer func() { stopProgress(); <-progressDone }()

	// The reflector's memory before any agent: once its start-up is over.
	time.Sleep(time.Second)
	base, err := procstat.ReadMemory(p.pid())
	if err != nil {
		return err
	}
	r.res.BaseRSSKiB = base.RSS

	agents, cancelAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancelAgents(); wg.Wait() }()
	r.phase.Store("cold")
	cold := r.mark(p)
	if err := r.startAgents(agents, &wg, p.fingerprint); err != nil {
		return err
	}
	if err := r.storm(ctx, &r.res.Cold, p, cold); err != nil {
		return err
	}
	r.phase.Store(phaseIdle)
	if err := r.idle(ctx, p, base.RSS); err != nil {
		return err
	}
	if !r.cfg.Restart {
		return nil
	}

	r.phase.Store("restart")
	restart := r.mark(p)
	restart.killed = time.Now()
	p.kill()
	r.fleet.newEpoch()
	if p, err = r.start(ctx); err != nil {
		return err
	}
	restart.at, restart.cpu = p.started, 0
	r.res.Restart = &Storm{}
	if err := r.storm(ctx, r.res.Restart, p, restart); err != nil {
		return err
	}
	r.phase.Store("done")
	return nil
}

// idle waits cfg.Idle with all agents connected and measures the
// reflector's CPU over that window and its memory at the end of it.
func (r *run) idle(ctx context.Context, p *reflectorProc, baseRSS int64) error {
	cpuA, err := procstat.CPU(p.pid())
	if err != nil {
		return err
	}
	drops := r.fleet.drops.Load()
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.Idle):
	}
	cpuB, err := procstat.CPU(p.pid())
	if err != nil {
		return err
	}
	mem, err := procstat.ReadMemory(p.pid())
	if err != nil {
		return err
	}
	window := time.Since(start)
	r.res.Idle = Idle{
		Seconds:      window.Seconds(),
		CPUPercent:   100 * (cpuB - cpuA).Seconds() / window.Seconds(),
		RSSKiB:       mem.RSS,
		PerDeviceKiB: float64(mem.RSS-baseRSS) / float64(r.cfg.Devices),
		Drops:        r.fleet.drops.Load() - drops,
	}
	return nil
}

// mark is where a storm is measured from.
type mark struct {
	at        time.Time     // the start: of the agents, or of the new reflector process
	killed    time.Time     // the SIGKILL before a restart; zero for a cold start
	cpu, self time.Duration // the CPU time of the reflector and of this process at the start
	failures  int64         // the fleet's failed attempts so far
}

// mark returns a mark of now, with p's CPU time.
func (r *run) mark(p *reflectorProc) mark {
	cpu, _ := procstat.CPU(p.pid())
	self, _ := procstat.CPU(os.Getpid())
	return mark{at: time.Now(), cpu: cpu, self: self, failures: r.fleet.failures.Load()}
}

// start starts the reflector on the run's data and port.
func (r *run) start(ctx context.Context) (*reflectorProc, error) {
	p, err := startReflector(ctx, r.cfg.Reflector, r.data, r.port, r.metricsPort, r.cfg.ServeArgs, r.logf)
	if err != nil {
		return nil, err
	}
	r.proc.Store(p)
	return p, nil
}

// startAgents starts one agent per device, all at once, as a fleet comes
// back after an outage.
func (r *run) startAgents(ctx context.Context, wg *sync.WaitGroup, fingerprint string) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	for i, d := range r.devs {
		switch r.cfg.Wire {
		case WebTunnel:
			a, err := newWTAgent(i, d, addr, fingerprint, r.cfg.Backoff, r.fleet)
			if err != nil {
				return err
			}
			wg.Go(func() { a.run(ctx) })
		default:
			a, err := agent.NewWithOptions(agent.Config{
				ReflectorURL: "https://" + addr,
				DeviceID:     d.id,
				Secret:       d.secret,
				Ports:        []uint16{22, 80},
				Fingerprint:  fingerprint,
			}, slog.New(agentLog{f: r.fleet, i: i}), agent.Options{
				BaseDelay:         r.cfg.Backoff.BaseDelay,
				MaxDelay:          r.cfg.Backoff.MaxDelay,
				UnauthorizedDelay: r.cfg.Backoff.UnauthorizedDelay,
				LocalAddr:         loopback(i),
			})
			if err != nil {
				return fmt.Errorf("swarm: agent %s: %w", d.id, err)
			}
			wg.Go(func() { a.Run(ctx) })
		}
	}
	return nil
}

// storm waits until every agent is connected (in the current epoch) or
// the timeout passes, and fills s with the figures since m.
func (r *run) storm(ctx context.Context, s *Storm, p *reflectorProc, m mark) error {
	deadline := time.Now().Add(r.cfg.Timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for !r.fleet.all() {
		if time.Now().After(deadline) {
			err = fmt.Errorf("swarm: %w: %d of %d after %s", errIncomplete, r.fleet.n.Load(), r.cfg.Devices, r.cfg.Timeout)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return fmt.Errorf("swarm: the reflector exited during the storm: %v", p.cmd.ProcessState)
		case <-tick.C:
		}
	}
	s.Seconds = time.Since(m.at).Seconds()
	if !m.killed.IsZero() {
		s.SinceKillSeconds = time.Since(m.killed).Seconds()
	}
	s.Connected = int(r.fleet.n.Load())
	s.Failures = r.fleet.failures.Load() - m.failures
	s.FailureKinds = r.fleet.failureKinds()
	cpu, cerr := procstat.CPU(p.pid())
	mem, merr := procstat.ReadMemory(p.pid())
	if e := errors.Join(cerr, merr); e != nil {
		return e
	}
	s.CPUSeconds = (cpu - m.cpu).Seconds()
	if self, err := procstat.CPU(os.Getpid()); err == nil {
		s.SwarmCPUSeconds = (self - m.self).Seconds()
	}
	s.PeakRSSKiB, s.RSSKiB = mem.HWM, mem.RSS
	// The reflector registers a tunnel just after answering the upgrade,
	// so its count may lag the agents' by a moment.
	s.Reflector = p.devicesConnected(ctx)
	for end := time.Now().Add(5 * time.Second); err == nil && s.Reflector >= 0 && s.Reflector != s.Connected && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		s.Reflector = p.devicesConnected(ctx)
	}
	return err
}

// phaseIdle is the phase of the idle window, in which the progress lines
// leave out the reflector's own count.
const phaseIdle = "idle"

// progress samples the counts and the reflector's figures about every
// second, writes a line for each to cfg.Progress and keeps it in the
// timeline.
func (r *run) progress(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastCPU time.Duration
	var lastAt time.Time
	var lastProc *reflectorProc
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := r.proc.Load()
		cpu, err1 := procstat.CPU(p.pid())
		mem, err2 := procstat.ReadMemory(p.pid())
		if err1 != nil || err2 != nil { // between a kill and the restart
			continue
		}
		now := time.Now()
		phase := r.phase.Load().(string)
		s := Sample{
			Seconds:   now.Sub(r.t0).Seconds(),
			Phase:     phase,
			Connected: r.fleet.n.Load(),
			Reflector: -1,
			Failures:  r.fleet.failures.Load(),
			RSSKiB:    mem.RSS,
		}
		if phase != phaseIdle {
			// Not while idle: a scrape of /metrics lists the process's
			// descriptors (process_open_fds), 10,000 of them at fleet
			// size, and once a second that is a sixth of the idle CPU
			// measured (perf, 2026-12-07); Prometheus scrapes every
			// 15 s or more.
			s.Reflector = p.devicesConnected(ctx)
		}
		if p == lastProc {
			s.CPUPercent = 100 * (cpu - lastCPU).Seconds() / now.Sub(lastAt).Seconds()
		}
		lastCPU, lastAt, lastProc = cpu, now, p
		r.res.Timeline = append(r.res.Timeline, s)
		if r.cfg.Progress != nil {
			seen := ""
			if s.Reflector >= 0 {
				seen = fmt.Sprintf(" (reflector: %d)", s.Reflector)
			}
			fmt.Fprintf(r.cfg.Progress, "%7.1fs %-7s connected %6d/%d%s  failed %6d  rss %7.1f MiB  cpu %4.0f%%\n",
				s.Seconds, s.Phase, s.Connected, r.cfg.Devices, seen, s.Failures, float64(s.RSSKiB)/1024, s.CPUPercent)
		}
	}
}
