package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/reflector-dev/reflector/internal/procstat"
)

// BenchmarkProcessCPU is what relaying costs the reflector and the agent
// as the processes users run: a real `reflector serve` and a real
// `reflector-agent`, a client in this process sending CONNECT over TLS
// with an API token, 1 MiB chunks each way. It reports the CPU time
// (user + system, from /proc) each process spends per GB carried; 1,000
// divided by the reflector's figure is the GB/s one core of it relays.
//
//	go test ./integration -run '^$' -bench ProcessCPU -benchtime 2s -count 3
func BenchmarkProcessCPU(b *testing.B) {
	dev := newBenchDevice(b)
	d := deploy(b, fmt.Sprintf("%d,%d", dev.source, dev.sink))
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+d.token))
	connect := func(b *testing.B, target uint16) net.Conn {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.port), &tls.Config{RootCAs: d.pool, ServerName: "localhost"})
		if err != nil {
			b.Fatal(err)
		}
		host := fmt.Sprintf("pump-17.localhost:%d", target)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", host, host, auth)
		br := bufio.NewReaderSize(c, 64)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK || br.Buffered() > 0 {
			b.Fatalf("CONNECT: %v %v", resp, err)
		}
		return c
	}
	measure := func(b *testing.B, run func()) {
		reflector0, agent0 := cpuSeconds(b, d.srv.cmd.Process.Pid), cpuSeconds(b, d.agent.cmd.Process.Pid)
		run()
		gb := float64(b.N) * chunk / 1e9
		b.ReportMetric((cpuSeconds(b, d.srv.cmd.Process.Pid)-reflector0)*1e3/gb, "reflector-cpu-ms/GB")
		b.ReportMetric((cpuSeconds(b, d.agent.cmd.Process.Pid)-agent0)*1e3/gb, "agent-cpu-ms/GB")
	}
	b.Run("download", func(b *testing.B) {
		c := connect(b, dev.source)
		measure(b, func() { benchDownload(b, c) })
	})
	b.Run("upload", func(b *testing.B) {
		c := connect(b, dev.sink)
		measure(b, func() { benchUpload(b, c) })
	})
}

// cpuSeconds is the user plus system CPU time of process pid so far.
func cpuSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	d, err := procstat.CPU(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d.Seconds()
}
