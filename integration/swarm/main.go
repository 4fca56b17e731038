// Command swarm connects thousands of simulated agents to a real `reflector
// serve` process and reports what they cost it: the time until all are
// connected, its resident memory and CPU, idle and in the storm, and with
// -restart the reconnect storm after a SIGKILL. The work is package
// internal/swarm's; docs/performance.md ("Fleet scale") has the commands
// and figures.
//
//	go run ./integration/swarm -devices 10000 -wire reflector -secrets generated -restart -cache ~/.cache/reflector-swarm
//
// Without -reflector it builds ./cmd/reflector of the working tree; with
// -reflector PATH it measures that binary instead (an older commit's, for
// an A/B comparison with the same swarm).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/reflector-dev/reflector/internal/swarm"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg swarm.Config
	var wire, secrets, serveArgs, jsonOut string
	flag.IntVar(&cfg.Devices, "devices", 1000, "simulated agents, one device each")
	flag.StringVar(&wire, "wire", string(swarm.Ours), "the agents' wire: reflector (ours, smux) or webtunnel (macchina.io WebTunnelAgent)")
	flag.StringVar(&secrets, "secrets", string(swarm.Generated), "generated (device add; SHA-256) or adopted (device import of the devices' own passwords; argon2id)")
	flag.BoolVar(&cfg.Restart, "restart", false, "after the idle window, SIGKILL the reflector, start it again on the same data and port, and measure the reconnect storm")
	flag.DurationVar(&cfg.Idle, "idle", time.Minute, "window after all are connected over which idle CPU and memory are measured")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "longest wait for all agents to connect, per storm")
	flag.StringVar(&cfg.Reflector, "reflector", "", "reflector binary to measure; default: build ./cmd/reflector of this tree")
	flag.StringVar(&cfg.Cache, "cache", "", "directory where provisioned fleets are kept and reused (<secrets>-<devices>/: data directory and secrets); default: provision for this run only")
	flag.StringVar(&cfg.WorkDir, "work", "", "directory for the run's copy of the data and the reflector's log; default: a temporary one, removed after a run that succeeded")
	flag.BoolVar(&cfg.ProvisionOnly, "provision-only", false, "provision the fleet into -cache and stop: ready for the runs that measure")
	flag.StringVar(&serveArgs, "serve-args", "", "more flags for reflector serve, separated by spaces")
	flag.StringVar(&jsonOut, "json", "", "also write the figures and the timeline as JSON to this file (- for stdout)")
	flag.Parse()
	cfg.Wire, cfg.Secrets = swarm.Wire(wire), swarm.Secrets(secrets)
	cfg.ServeArgs = strings.Fields(serveArgs)
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Reflector == "" {
		bin, cleanup, err := build(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "swarm: %v\n", err)
			return 1
		}
		defer cleanup()
		cfg.Reflector = bin
	}
	res, err := swarm.Run(ctx, cfg)
	if res != nil {
		res.WriteSummary(os.Stdout)
		if jsonOut != "" {
			if werr := writeJSON(jsonOut, res); werr != nil {
				fmt.Fprintf(os.Stderr, "swarm: %v\n", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// build builds ./cmd/reflector into a temporary directory.
func build(ctx context.Context) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "swarm-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "reflector")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/reflector-dev/reflector/cmd/reflector")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build the reflector (run from the repository, or give -reflector): %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func writeJSON(path string, res *swarm.Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
