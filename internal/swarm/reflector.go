package swarm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reflectorProc is a running `reflector serve` whose resources the swarm
// measures through /proc.
type reflectorProc struct {
	cmd         *exec.Cmd
	started     time.Time // when the process was started, before it listened
	fingerprint string    // its certificate's pin, as it printed it
	metricsURL  string    // its /metrics, or "" when the binary has no --metrics-listen
	done        chan struct{}
}

var fingerprintRe = regexp.MustCompile(`TLS certificate fingerprint: (sha256:[0-9a-f]{64})`)

// startReflector starts bin serve on 127.0.0.1:port with data as its data
// directory, and returns once it has printed its certificate's fingerprint
// (it listens by then). Its output goes to logw. metricsPort, if not 0, is
// given to --metrics-listen.
func startReflector(ctx context.Context, bin, data string, port, metricsPort int, extra []string, logw io.Writer) (*reflectorProc, error) {
	args := []string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", data, "--log-level", "warn"}
	p := &reflectorProc{done: make(chan struct{})}
	if metricsPort != 0 {
		addr := fmt.Sprintf("127.0.0.1:%d", metricsPort)
		args = append(args, "--metrics-listen", addr)
		p.metricsURL = "http://" + addr + "/metrics"
	}
	p.cmd = exec.Command(bin, append(args, extra...)...)
	p.cmd.Stderr = logw
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start reflector: %w", err)
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start reflector: %w", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logw, sc.Text())
			if m := fingerprintRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case p.fingerprint = <-found:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("start reflector: %s exited before listening (%v); see its log", bin, p.cmd.ProcessState)
	case <-time.After(2 * time.Minute):
		p.kill()
		return nil, fmt.Errorf("start reflector: %s printed no fingerprint within 2 minutes", bin)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

func (p *reflectorProc) pid() int { return p.cmd.Process.Pid }

// kill ends the process with SIGKILL, as a crash or the OOM killer would,
// and waits for it.
func (p *reflectorProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to shut down (SIGTERM) and kills it after 15 s.
func (p *reflectorProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
	}
}

// devicesConnected sums reflector_devices_connected over both kinds from
// the reflector's /metrics; -1 when it cannot be read.
func (p *reflectorProc) devicesConnected(ctx context.Context) int {
	if p.metricsURL == "" {
		return -1
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum, found := 0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, "reflector_devices_connected") {
			continue
		}
		if n, err := strconv.ParseFloat(val, 64); err == nil {
			sum += int(n)
			found = true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// supportsFlag reports whether bin's `serve` knows the flag name, so that
// an older binary measured for comparison is not started with a flag it
// refuses.
func supportsFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" ")) || bytes.Contains(out, []byte("-"+name+"\n"))
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// errIncomplete is returned when not every agent connected in time.
var errIncomplete = errors.New("not every agent connected in time")
