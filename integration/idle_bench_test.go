package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/control"
)

// BenchmarkIdleDeviceMemory is what a connected, idle device costs the
// reflector: the resident memory of a real `reflector serve` process before
// and after idleDevices agents (run in this process) have connected.
//
//	go test ./integration -run '^$' -bench IdleDeviceMemory
func BenchmarkIdleDeviceMemory(b *testing.B) {
	const idleDevices = 200
	data := b.TempDir()
	port := freePort(b)
	srv, fp := serveProc(b, data, port, "--log-level", "warn")

	secrets := make([]string, idleDevices)
	secretRe := regexp.MustCompile(`REFLECTOR_DEVICE_SECRET='?([A-Za-z0-9_-]+)`)
	for i := range secrets {
		var out bytes.Buffer
		if code := control.Main(context.Background(), data, []string{"device", "add", fmt.Sprintf("idle-%d", i), "--ports", "22"}, nil, &out, &out, nil); code != 0 {
			b.Fatalf("device add: %s", out.String())
		}
		secrets[i] = secretRe.FindStringSubmatch(out.String())[1]
	}
	time.Sleep(500 * time.Millisecond)
	before := rssKiB(b, srv.cmd.Process.Pid)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, idleDevices)
	for i, secret := range secrets {
		a, err := agent.New(agent.Config{
			ReflectorURL: fmt.Sprintf("https://127.0.0.1:%d", port), DeviceID: fmt.Sprintf("idle-%d", i),
			Secret: secret, Ports: []uint16{22}, Fingerprint: fp,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		go func() { a.Run(ctx); done <- struct{}{} }()
	}
	defer func() {
		cancel()
		for range secrets {
			<-done
		}
	}()
	waitFor(b, func() bool {
		var out bytes.Buffer
		control.Main(context.Background(), data, []string{"device", "list"}, nil, &out, &out, nil)
		return strings.Count(out.String(), "online") == idleDevices
	})
	time.Sleep(2 * time.Second) // let handshake garbage be collected
	after := rssKiB(b, srv.cmd.Process.Pid)
	b.ReportMetric(float64(after-before)/idleDevices, "KiB/device")
	b.ReportMetric(float64(after)/1024, "MiB-total")
}

// rssKiB reads VmRSS of a process.
func rssKiB(b *testing.B, pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		b.Fatal("no VmRSS")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
