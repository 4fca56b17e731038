// Command procbench measures the reflector as users run it, every party a
// process of its own on loopback, against direct connections, two plain
// relays, and frp and chisel when given, in one run, and prints a Markdown
// table of the medians (package internal/procbench; docs/performance.md has
// the command and the figures).
//
//	go run ./integration/procbench -runs 3 -duration 3s -frp /tmp/bin -chisel /tmp/bin/chisel
//
// It builds ./cmd/reflector and ./cmd/reflector-agent of the working tree
// unless -reflector and -agent name binaries.
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

	"github.com/reflector-dev/reflector/internal/procbench"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "device":
			os.Exit(procbench.DeviceMain(os.Args[2:]))
		case "load":
			os.Exit(procbench.LoadMain(os.Args[2:]))
		case "relay":
			os.Exit(procbench.RelayMain(os.Args[2:]))
		}
	}
	os.Exit(run())
}

func run() int {
	var cfg procbench.Config
	var frp, jsonOut, only, systems, serveArgs, agentArgs string
	flag.StringVar(&cfg.Reflector, "reflector", "", "reflector binary; default: build ./cmd/reflector")
	flag.StringVar(&cfg.Agent, "agent", "", "reflector-agent binary; default: build ./cmd/reflector-agent")
	flag.StringVar(&frp, "frp", "", "directory holding frps and frpc, to measure frp too")
	flag.StringVar(&cfg.Chisel, "chisel", "", "chisel binary, to measure chisel too")
	flag.StringVar(&cfg.Wrk, "wrk", "wrk", "wrk binary for the HTTP rows; empty to leave them out")
	flag.DurationVar(&cfg.Duration, "duration", 3*time.Second, "length of each measurement")
	flag.IntVar(&cfg.Runs, "runs", 3, "runs of every measurement, interleaved; medians are reported")
	flag.StringVar(&cfg.Work, "work", "", "directory for data, configuration and logs; default: a temporary one")
	flag.StringVar(&jsonOut, "json", "", "also write every figure as JSON to this file")
	flag.StringVar(&only, "tests", "", "measure only the tests whose names contain one of these comma-separated words, e.g. HTTP")
	flag.StringVar(&systems, "systems", "", "measure only the systems whose names contain one of these comma-separated words, e.g. TLS (direct is always measured)")
	flag.StringVar(&serveArgs, "serve-args", "", "more flags for reflector serve, separated by spaces, e.g. --pprof-listen 127.0.0.1:6060")
	flag.StringVar(&agentArgs, "agent-args", "", "more flags for reflector-agent, separated by spaces")
	flag.Parse()
	cfg.Tests, cfg.Systems = words(only), words(systems)
	cfg.ServeArgs, cfg.AgentArgs = strings.Fields(serveArgs), strings.Fields(agentArgs)
	if frp != "" {
		cfg.FRPS, cfg.FRPC = filepath.Join(frp, "frps"), filepath.Join(frp, "frpc")
	}
	if cfg.Wrk != "" {
		if p, err := exec.LookPath(cfg.Wrk); err == nil {
			cfg.Wrk = p
		} else {
			fmt.Fprintf(os.Stderr, "procbench: %s not found (Debian's wrk): the HTTP rows are left out\n", cfg.Wrk)
			cfg.Wrk = ""
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "procbench:", err)
		return 1
	}
	cfg.Self = self
	if cfg.Work == "" {
		dir, err := os.MkdirTemp("", "procbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "procbench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.Work = dir
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, b := range []struct {
		bin *string
		pkg string
	}{{&cfg.Reflector, "reflector"}, {&cfg.Agent, "reflector-agent"}} {
		if *b.bin != "" {
			continue
		}
		*b.bin = filepath.Join(cfg.Work, b.pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *b.bin, "github.com/reflector-dev/reflector/cmd/"+b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "procbench: build %s (run from the repository, or give -%s): %v\n", b.pkg, b.pkg, err)
			return 1
		}
	}
	cfg.Progress = os.Stderr
	res, err := procbench.Run(ctx, cfg)
	if res != nil {
		res.WriteTable(os.Stdout)
		if jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(jsonOut, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "procbench:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "procbench:", err)
		return 1
	}
	return 0
}

// words splits a comma-separated list, dropping empty words.
func words(s string) []string {
	var out []string
	for _, w := range strings.Split(s, ",") {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return out
}
