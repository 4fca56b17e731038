package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/reflector-dev/reflector/internal/control"
	"github.com/reflector-dev/reflector/internal/profiling"
	"github.com/reflector-dev/reflector/internal/server"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg server.Config
	var logLevel string
	var withDemo bool
	var pprofListen string
	fs := newFlagSet("reflector serve", stderr)
	fs.StringVar(&cfg.Listen, "listen", ":8443", "TLS listener for everything: proxy, tunnel endpoint, device subdomains")
	fs.StringVar(&cfg.ProxyListen, "proxy-listen", "", "optional plain-HTTP listener for the proxy alone, e.g. 127.0.0.1:8080")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "optional plain-HTTP listener for Prometheus GET /metrics, unauthenticated: use a loopback or private address, e.g. 127.0.0.1:9464")
	fs.StringVar(&cfg.Domain, "domain", "localhost", "domain devices live under: device pump-17 is pump-17.<domain>")
	fs.StringVar(&cfg.PublicPort, "public-port", "", "port users and agents reach --listen at, when a port mapping in front changes it (e.g. 443); default: the listener's")
	fs.StringVar(&cfg.DataDir, "data", defaultData, "data directory: database, control socket, self-signed certificate")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (PEM); default: a self-signed one kept in --data")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS key file (PEM), with --tls-cert")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.Func("trusted-proxy", "CIDR of a reverse proxy whose X-Forwarded-For names the client (repeatable); others are ignored", func(v string) error {
		cfg.TrustedProxies = append(cfg.TrustedProxies, v)
		return nil
	})
	fs.StringVar(&cfg.WebTunnelDomain, "webtunnel-domain", "", "the only @domain accepted from macchina.io WebTunnelAgent devices (deviceId@domain); default: any")
	fs.StringVar(&cfg.BrandDir, "brand-dir", "", "`directory` with the web pages' texts.json, style.css, logo and favicon (docs/branding.md); default: the reflector's own")
	fs.StringVar(&cfg.DeviceCA, "device-ca", "", "PEM file of CAs to verify device web servers that speak HTTPS; default: not verified (self-signed)")
	fs.IntVar(&cfg.ConnsPerAddr, "conns-per-address", 0, "most connections one client address (an IPv6 /64) may hold before authenticating, --trusted-proxy addresses aside; 0: 256, -1: no limit")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0, "on SIGTERM, keep serving this long with /readyz answering 503 before closing the listeners, so load balancers take the reflector out of rotation first, e.g. 10s")
	fs.IntVar(&cfg.PendingHandshakes, "max-pending-handshakes", 0, "most agent handshakes in progress at once (both wires); beyond it agents get 503 with Retry-After at once; 0: what the CPUs finish in 2.5 s by an argon2id calibration at start (at least 64), -1: no limit")
	retention := daysFlag(90 * 24 * time.Hour)
	fs.Var(&retention, "audit-retention", "how long audit log entries are kept, e.g. 90d or 720h")
	fs.StringVar(&pprofListen, "pprof-listen", "", "serve Go's profiles at http://ADDR/debug/pprof/, a loopback address such as 127.0.0.1:6060 (for measuring; off by default)")
	fs.BoolVar(&cfg.NoWebSSH, "no-web-ssh", false, "turn off the SSH terminal in the browser (with it on, the reflector is the SSH client and sees those sessions in the clear)")
	fs.BoolVar(&withDemo, "demo", false, "also run an in-process demo device \"demo\" and a demo admin, and print a curl line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reflector serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.AuditRetention = time.Duration(retention)
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(stderr, "reflector serve: --log-level: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if pprofListen != "" {
		l, err := profiling.Listen(pprofListen)
		if err != nil {
			fmt.Fprintf(stderr, "reflector serve: %v\n", err)
			return 2
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go profiling.Serve(ctx, l, cfg.Logger)
	}
	srv, err := server.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "reflector serve: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "reflector listening on %s (domain %s)\n", srv.Addr(), cfg.Domain)
	if a := srv.ProxyAddr(); a != nil {
		fmt.Fprintf(stdout, "plain-HTTP proxy on %s\n", a)
	}
	if a := srv.MetricsAddr(); a != nil {
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", a)
	}
	fmt.Fprintf(stdout, "TLS certificate fingerprint: %s\n", srv.Fingerprint())

	if withDemo {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, port, _ := net.SplitHostPort(srv.Addr().String())
		d, err := startDemo(ctx, demoConfig{
			Store:        srv.Store(),
			ReflectorURL: "https://" + net.JoinHostPort("127.0.0.1", port),
			Fingerprint:  srv.Fingerprint(),
			Logger:       cfg.Logger,
		})
		if err != nil {
			fmt.Fprintf(stderr, "reflector serve: start demo: %v\n", err)
			return 1
		}
		defer func() { cancel(); d.Wait() }()
		caFile := ""
		if cfg.TLSCert == "" {
			caFile = filepath.Join(absDir(cfg.DataDir), server.CertFile)
		}
		fmt.Fprintf(stdout, "demo device %q is up; demo admin %q, password %s\n", demoDeviceID, demoUserName, d.Password)
		fmt.Fprintf(stdout, "try:\n  %s\n", d.CurlLine(srv.URL(), caFile, cfg.Domain))
	}
	if err := srv.Run(ctx); err != nil {
		cfg.Logger.Error("reflector stopped", "err", err)
		return 1
	}
	return 0
}

// daysFlag is a duration flag that also takes days: "90d".
type daysFlag time.Duration

func (d *daysFlag) String() string { return time.Duration(*d).String() }

func (d *daysFlag) Set(s string) error {
	v, err := control.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("bad duration %q: want a positive one, e.g. 90d or 720h", s)
	}
	*d = daysFlag(v)
	return nil
}

func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
