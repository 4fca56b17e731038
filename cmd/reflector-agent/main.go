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
//	REFLECTOR_DEVICE_SECRET=… reflector-agent --reflector https://reflector.example.com:8443 \
//	    --device pump-17 --ports 80,22 --http-port 80
//	reflector-agent --config /etc/WebTunnelAgent.properties
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/reflector-dev/reflector/agent"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("reflector-agent", flag.ContinueOnError)
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
		logLevel    = fs.String("log-level", "info", "log `level`: info or debug (also warn, error)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: reflector-agent [flags]\n\n"+
			"Keeps a tunnel from this device to a reflector and forwards the reflector's\n"+
			"connections to the allowed local ports. The secret is best given in $%s.\n\n", agent.SecretEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "reflector-agent: unexpected arguments %q\n", fs.Args())
		return 2
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "reflector-agent: --log-level %q: want info or debug\n", *logLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var cfg agent.Config
	if *configFile != "" {
		var err error
		if cfg, err = agent.LoadProperties(*configFile, logger); err != nil {
			fmt.Fprintf(os.Stderr, "reflector-agent: %v\n", err)
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
			p, err := agent.ParsePorts(*ports)
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
		}
	})
	if flagErr != nil {
		fmt.Fprintf(os.Stderr, "reflector-agent: %v\n", flagErr)
		return 2
	}
	if cfg.Secret == "" {
		cfg.Secret = os.Getenv(agent.SecretEnv)
	}

	if err := cfg.Validate(); err != nil { // fills in defaults, for the log line below
		fmt.Fprintf(os.Stderr, "reflector-agent: %v\n", err)
		return 2
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reflector-agent: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger.Info("reflector-agent starting", "version", agent.Version, "config", cfg)
	if err := a.Run(ctx); err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	logger.Info("reflector-agent stopped")
	return 0
}
