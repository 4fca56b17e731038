package main

// The in-process demo device of `reflector serve --demo`: a real agent that
// tunnels into the reflector's own listener, whose device ports are served in
// process over net.Pipe — a small web page on port 80 and an echo service on
// port 7 — so the demo binds no port of its own. It also makes the demo admin
// user with a random password.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// Names of the demo records.
const (
	demoDeviceID = "demo"
	demoUserName = "demo"
	demoGroup    = "demo"
	demoWebPort  = 80
	demoEchoPort = 7
)

// demoConfig is what the demo needs from the server.
type demoConfig struct {
	Store        *store.Store
	ReflectorURL string // where the agent dials, e.g. https://127.0.0.1:8443
	Fingerprint  string // the reflector certificate's pin
	Logger       *slog.Logger
}

// demo is a running demo device.
type demo struct {
	Password string // the demo admin's password, made at start

	done chan struct{}
}

// startDemo makes the demo records (a fresh device secret and admin password on
// every start) and runs the demo agent until ctx ends.
func startDemo(ctx context.Context, cfg demoConfig) (*demo, error) {
	password, err := demoPassword()
	if err != nil {
		return nil, err
	}
	// The group outlives restarts like the user; users and devices may only
	// join groups that exist.
	if err := cfg.Store.AddGroup(store.Group{Name: demoGroup}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("demo group: %w", err)
	}
	err = cfg.Store.AddUser(demoUserName, password, store.RoleAdmin, []string{demoGroup})
	if errors.Is(err, store.ErrExists) {
		err = cfg.Store.SetPassword(demoUserName, password)
	}
	if err != nil {
		return nil, fmt.Errorf("demo user: %w", err)
	}
	if err := cfg.Store.RemoveDevice(demoDeviceID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("demo device: %w", err)
	}
	secret, err := cfg.Store.AddDevice(store.Device{ID: demoDeviceID, Name: "demo device", Groups: []string{demoGroup}})
	if err != nil {
		return nil, fmt.Errorf("demo device: %w", err)
	}

	dev := newDemoDevice()
	a, err := agent.NewWithOptions(agent.Config{
		ReflectorURL: cfg.ReflectorURL,
		DeviceID:     demoDeviceID,
		DeviceName:   "demo device",
		Secret:       secret,
		Ports:        []uint16{demoWebPort, demoEchoPort},
		HTTPPort:     demoWebPort,
		Fingerprint:  cfg.Fingerprint,
	}, cfg.Logger.With("component", "demo"), agent.Options{DialLocal: dev.dial})
	if err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	d := &demo{Password: password, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		a.Run(ctx)
		dev.close()
	}()
	return d, nil
}

// Wait returns when the demo agent has stopped.
func (d *demo) Wait() { <-d.done }

// CurlLine is a command that fetches the demo page through the proxy as is.
// caFile, when set, is the self-signed certificate curl must trust.
func (d *demo) CurlLine(proxyURL, caFile, domain string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "curl --proxy %s", proxyURL)
	if caFile != "" {
		fmt.Fprintf(&b, " --proxy-cacert %s", shellQuote(caFile))
	}
	fmt.Fprintf(&b, " --proxy-user %s http://%s.%s/", shellQuote(demoUserName+":"+d.Password), demoDeviceID, domain)
	return b.String()
}

// demoDevice serves the demo ports over in-memory pipes.
type demoDevice struct {
	web  *pipeListener
	srv  *http.Server
	once sync.Once
}

func newDemoDevice() *demoDevice {
	d := &demoDevice{web: newPipeListener()}
	d.srv = &http.Server{Handler: http.HandlerFunc(demoPage), ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(d.web)
	return d
}

// dial is the agent's local dialer: port 80 is the web page, port 7 echoes.
func (d *demoDevice) dial(ctx context.Context, port uint16) (net.Conn, error) {
	switch port {
	case demoWebPort:
		return d.web.dial(ctx)
	case demoEchoPort:
		agentEnd, deviceEnd := net.Pipe()
		go func() {
			io.Copy(deviceEnd, deviceEnd)
			deviceEnd.Close()
		}()
		return agentEnd, nil
	}
	return nil, fmt.Errorf("demo device: port %d: %w", port, errRefused)
}

var errRefused = errors.New("connection refused")

func (d *demoDevice) close() { d.once.Do(func() { d.srv.Close() }) }

var demoPageTemplate = template.Must(template.New("demoPage").Parse(`<!doctype html>
<title>Reflector demo device</title>
<h1>Hello from the demo device</h1>
<p>This page is served by the device <code>demo</code> through its tunnel.
You asked for <code>{{.Path}}</code> at {{.Time}}.</p>
`))

func demoPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	demoPageTemplate.Execute(w, struct{ Path, Time string }{r.URL.Path, time.Now().UTC().Format(time.RFC3339)})
}

func demoPassword() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
