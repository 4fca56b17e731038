// Command reflector-agent runs on or next to a device behind NAT or a
// firewall. It dials out to a reflector over HTTPS, keeps that one tunnel up
// with backoff, and forwards each connection the reflector opens to a port
// of the device's allow-list; the device opens no inbound port.
//
// It is configured by flags, by an existing macchina.io REMOTE
// WebTunnelAgent.properties file (--config, read unchanged), or both: flags
// given on the command line override the file. The device secret comes from
// --secret, the file, or the REFLECTOR_DEVICE_SECRET environment variable;
// prefer the environment, since a command line is visible to every user of
// the device. SIGINT and SIGTERM stop the agent gracefully.
//
// A device without a secret can enrol itself instead: given an enrolment key
// (--enroll, or REFLECTOR_ENROLL_KEY), it registers at the reflector on its
// first start, receives its own secret and keeps it in a state file (--state;
// by default beside the config file, else reflector-agent.state in the
// working directory), which every later start reads; the key is then no
// longer used. A refused enrolment (bad, expired or used-up key, device id
// taken) stops the agent with exit status 1.
//
//	REFLECTOR_DEVICE_SECRET=… reflector-agent --reflector https://reflector.example.com:8443 \
//	    --device pump-17 --ports 80,22 --http-port 80
//	REFLECTOR_ENROLL_KEY=rfe_… reflector-agent --reflector https://reflector.example.com:8443 \
//	    --device pump-17 --ports 80,22 --state /var/lib/reflector-agent/pump-17.state
//	reflector-agent --config /etc/WebTunnelAgent.properties
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/profiling"
	"github.com/reflector-dev/reflector/tunnel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command: it returns the exit status, 2 for a usage or
// configuration error, 1 when the agent stopped on an error (a refused
// enrolment). It runs until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("reflector-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		reflector   = fs.String("reflector", "", "reflector base `URL`, e.g. https://reflector.example.com:8443")
		device      = fs.String("device", "", "device `ID`, a lower-case DNS label")
		secret      = fs.String("secret", "", "device `secret`; prefer $"+agent.SecretEnv+", as a command line is visible to other users")
		ports       = fs.String("ports", "", "comma-separated local `ports` the reflector may open, e.g. 80,22")
		localAddr   = fs.String("local-addr", agent.DefaultLocalAddr, "`host` whose ports are forwarded")
		httpPort    = fs.String("http-port", "", "`port` of the device's web interface (must be in --ports)")
		caFile      = fs.String("ca-file", "", "PEM `file` (or directory) of CA certificates to trust besides the system's")
		fingerprint = fs.String("fingerprint", "", "pin the reflector's certificate: sha256:`HEX` (replaces chain verification)")
		insecure    = fs.Bool("insecure", false, "accept any reflector certificate (testing only)")
		configFile  = fs.String("config", "", "WebTunnelAgent.properties `file` to read first; flags given override it")
		enrollKey   = fs.String("enroll", "", "enrolment `key` (rfe_…) for a device without a secret: the first start registers the device\n"+
			"and keeps the secret it receives in the --state file; later starts use that and ignore the key.\n"+
			"Prefer $"+agent.EnrollKeyEnv+", as a command line is visible to other users")
		stateFile = fs.String("state", "", "`file` keeping the secret an enrolment obtained (JSON, mode 0600), read at every start\n"+
			"without a device secret (default: beside --config, named after it with the extension .state,\n"+
			"e.g. /etc/WebTunnelAgent.properties → /etc/WebTunnelAgent.state; without --config,\n"+
			agent.DefaultStateName+" in the working directory)")
		logLevel    = fs.String("log-level", "info", "log `level`: info or debug (also warn, error)")
		pprofListen = fs.String("pprof-listen", "", "serve Go's profiles at http://`ADDR`/debug/pprof/, a loopback address such as 127.0.0.1:6061 (for measuring; off by default)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: reflector-agent [flags]\n\n"+
			"Keeps a tunnel from this device to a reflector and forwards the reflector's\n"+
			"connections to the allowed local ports. The device secret is best given in\n"+
			"$%s; a device without one enrols with a key from\n"+
			"$%s (or --enroll) and keeps the secret it receives in the\n"+
			"--state file.\n\n", agent.SecretEnv, agent.EnrollKeyEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "reflector-agent: unexpected arguments %q\n", fs.Args())
		return 2
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "reflector-agent: --log-level %q: want info or debug\n", *logLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var cfg agent.Config
	if *configFile != "" {
		var err error
		if cfg, err = agent.LoadProperties(*configFile, logger); err != nil {
			fmt.Fprintf(stderr, "reflector-agent: %v\n", err)
			return 2
		}
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) { // only the flags given override the file
		switch f.Name {
		case "reflector":
			cfg.ReflectorURL = *reflector
		case "device":
			cfg.DeviceID = *device
		case "secret":
			cfg.Secret = *secret
		case "ports":
			p, err := tunnel.ParsePorts(*ports)
			if err != nil {
				flagErr = fmt.Errorf("--ports: %w", err)
			}
			cfg.Ports = p
		case "local-addr":
			cfg.LocalAddr = *localAddr
		case "http-port":
			n, err := strconv.ParseUint(*httpPort, 10, 16)
			if err != nil {
				flagErr = fmt.Errorf("--http-port %q: not a port number", *httpPort)
			}
			cfg.HTTPPort = uint16(n)
		case "ca-file":
			cfg.CAFile = *caFile
		case "fingerprint":
			cfg.Fingerprint = *fingerprint
		case "insecure":
			cfg.Insecure = *insecure
		case "enroll":
			cfg.EnrollKey = *enrollKey
		case "state":
			cfg.StateFile = *stateFile
		}
	})
	if flagErr != nil {
		fmt.Fprintf(stderr, "reflector-agent: %v\n", flagErr)
		return 2
	}
	if cfg.Secret == "" {
		cfg.Secret = getenv(agent.SecretEnv)
	}
	if cfg.EnrollKey == "" {
		cfg.EnrollKey = getenv(agent.EnrollKeyEnv)
	}
	if cfg.StateFile == "" {
		cfg.StateFile = agent.DefaultStatePath(*configFile)
	}

	if err := cfg.Validate(); err != nil { // fills in defaults, for the log line below
		fmt.Fprintf(stderr, "reflector-agent: %v\n", err)
		return 2
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "reflector-agent: %v\n", err)
		return 2
	}
	if *pprofListen != "" {
		l, err := profiling.Listen(*pprofListen)
		if err != nil {
			fmt.Fprintf(stderr, "reflector-agent: %v\n", err)
			return 2
		}
		go profiling.Serve(ctx, l, logger)
	}
	logger.Info("reflector-agent starting", "version", agent.Version, "config", cfg)
	if err := a.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	logger.Info("reflector-agent stopped")
	return 0
}
