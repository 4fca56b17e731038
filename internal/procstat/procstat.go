// Package procstat reads what a Linux process has used from /proc: its CPU
// time and its resident memory. The benchmarks that run the reflector, its
// agents and their load as real processes (internal/swarm,
// internal/procbench, integration's BenchmarkProcessCPU) measure them with
// it.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux these tools run on (it is fixed in the kernel's ABI for x86 and
// arm).
const clockTick = 10 * time.Millisecond

// CPU returns the CPU time pid has used, user and system (/proc/PID/stat,
// utime and stime).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// the fields after it start with the state (field 3).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time of %d: no command name in stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time of %d: short stat", pid)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime (14), stime (15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// Memory is a process's resident memory in KiB: now (VmRSS) and its peak
// (VmHWM).
type Memory struct{ RSS, HWM int64 }

// ReadMemory reads VmRSS and VmHWM of pid from /proc/PID/status.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	var m Memory
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("read memory of %d: %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			m.RSS = n
		} else {
			m.HWM = n
		}
	}
	return m, nil
}
