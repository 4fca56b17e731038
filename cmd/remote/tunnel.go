package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/client"
)

// cmdForward forwards local ports to the device's until Ctrl-C.
func cmdForward(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("forward")
	bind := fs.String("bind", "127.0.0.1", "the local address to listen on")
	rest, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) < 2 {
		return usageError("want remote forward DEVICE LOCAL:REMOTE [LOCAL:REMOTE…]")
	}
	device := rest[0]
	var maps []client.PortMap
	for _, s := range rest[1:] {
		m, err := client.ParsePortMap(s)
		if err != nil {
			return usageError("%v", err)
		}
		maps = append(maps, m)
	}
	c, err := e.connected()
	if err != nil {
		return err
	}
	// A stream to each port first: a wrong token, device or port is said
	// now, not at the first connection. A device offline may come back:
	// forward anyway.
	for _, m := range maps {
		if err := probe(ctx, c, device, m.Remote); client.Temporary(err) {
			fmt.Fprintf(e.stderr, "remote: %s; forwarding anyway: connections wait up to 30s for it\n", explain(err))
			break
		} else if err != nil {
			return err
		}
	}
	lns, err := client.Listen(*bind, maps)
	if err != nil {
		return err
	}
	for i, ln := range lns {
		fmt.Fprintf(e.stdout, "%s -> %s port %d\n", ln.Addr(), client.DeviceID(device), maps[i].Remote)
	}
	fmt.Fprintln(e.stdout, "Forwarding; Ctrl-C to stop.")
	f := &client.Forwarder{Client: c, Device: device, Logger: stderrLogger(e)}
	return f.Serve(ctx, lns, maps)
}

// probe opens and closes one stream to port, to report a refusal before
// any listener opens.
func probe(ctx context.Context, c *client.Client, device string, port int) error {
	conn, err := c.Dial(ctx, device, port)
	if err != nil {
		return err
	}
	return conn.Close()
}

func stderrLogger(e *env) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// cmdConnect bridges stdin and stdout to a device port, as ssh's
// ProxyCommand wants: `remote connect %h %p`. DEVICE:PORT in one argument
// works too (macchina.io's remote-connect form).
func cmdConnect(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("connect")
	rest, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	device, portStr := "", ""
	switch len(rest) {
	case 1:
		var ok bool
		if device, portStr, ok = strings.Cut(rest[0], ":"); !ok {
			return usageError("want remote connect DEVICE PORT")
		}
	case 2:
		device, portStr = rest[0], rest[1]
	default:
		return usageError("want remote connect DEVICE PORT")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return usageError("port %q: want a number", portStr)
	}
	c, err := e.connected()
	if err != nil {
		return err
	}
	conn, err := c.Dial(ctx, device, port)
	if err != nil {
		return err
	}
	client.SpliceStdio(ctx, conn, e.stdin, e.stdout)
	return nil
}

// cmdVNC forwards the device's VNC port to a free local port and starts
// vncviewer on it, or prints the address when there is no viewer.
func cmdVNC(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("vnc")
	port := fs.Int("port", 0, "the device's VNC port (default: its vncPort property, else 5900)")
	viewer := fs.String("viewer", "vncviewer", "the VNC viewer to start")
	rest, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("want remote vnc DEVICE")
	}
	device := rest[0]
	c, err := e.connected()
	if err != nil {
		return err
	}
	if *port == 0 {
		*port = 5900
		if d, err := c.Device(ctx, device); err == nil {
			if p, err := strconv.Atoi(d.Status.Properties["vncPort"]); err == nil && p > 0 && p < 65536 {
				*port = p
			}
		}
	}
	if err := probe(ctx, c, device, *port); err != nil {
		return err
	}
	maps := []client.PortMap{{Local: 0, Remote: *port}}
	lns, err := client.Listen("127.0.0.1", maps)
	if err != nil {
		return err
	}
	addr := lns[0].Addr().(*net.TCPAddr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		f := &client.Forwarder{Client: c, Device: device, Logger: stderrLogger(e)}
		done <- f.Serve(ctx, lns, maps)
	}()
	path, lookErr := exec.LookPath(*viewer)
	if lookErr != nil {
		fmt.Fprintf(e.stdout, "%s's VNC (port %d) is at %s; no %s found, so point your VNC viewer there. Ctrl-C to stop.\n",
			client.DeviceID(device), *port, addr, *viewer)
		return <-done
	}
	fmt.Fprintf(e.stdout, "%s's VNC (port %d) is at %s; starting %s\n", client.DeviceID(device), *port, addr, *viewer)
	// TigerVNC, TightVNC and RealVNC read host::port as a TCP port.
	cmd := exec.CommandContext(ctx, path, fmt.Sprintf("127.0.0.1::%d", addr.Port))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	runErr := cmd.Run()
	cancel()
	<-done
	var exit *exec.ExitError
	if errors.As(runErr, &exit) && exit.ExitCode() > 0 {
		return exitCode(exit.ExitCode())
	}
	if runErr != nil && ctx.Err() == nil {
		return fmt.Errorf("run %s: %w", *viewer, runErr)
	}
	return nil
}
