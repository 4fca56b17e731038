// Package demo runs the in-process demo device of `reflector serve --demo`: a
// real agent that tunnels into the reflector's own listener, whose device
// ports are served in process over net.Pipe — a small web page on port 80
// and an echo service on port 7 — so the demo binds no port of its own. It
// also makes the demo admin user with a random password.
package demo

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
	DeviceID  = "demo"
	UserName  = "demo"
	groupName = "demo"
	webPort   = 80
	echoPort  = 7
)

// Config is what the demo needs from the server.
type Config struct {
	Store        *store.Store
	ReflectorURL string // where the agent dials, e.g. https://127.0.0.1:8443
	Fingerprint  string // the reflector certificate's pin
	Logger       *slog.Logger
}

// Demo is a running demo device.
type Demo struct {
	Password string // the demo admin's password, made at start

	done chan struct{}
}

// Start makes the demo records (a fresh device secret and admin password on
// every start) and runs the demo agent until ctx ends.
func Start(ctx context.Context, cfg Config) (*Demo, error) {
	password, err := randomString()
	if err != nil {
		return nil, err
	}
	// The group outlives restarts like the user; users and devices may only
	// join groups that exist.
	if err := cfg.Store.AddGroup(store.Group{Name: groupName}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("demo group: %w", err)
	}
	err = cfg.Store.AddUser(UserName, password, store.RoleAdmin, []string{groupName})
	if errors.Is(err, store.ErrExists) {
		err = cfg.Store.SetPassword(UserName, password)
	}
	if err != nil {
		return nil, fmt.Errorf("demo user: %w", err)
	}
	if err := cfg.Store.RemoveDevice(DeviceID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("demo device: %w", err)
	}
	secret, err := cfg.Store.AddDevice(store.Device{ID: DeviceID, Name: "Demo device", Groups: []string{groupName}})
	if err != nil {
		return nil, fmt.Errorf("demo device: %w", err)
	}

	dev := newDevice()
	a, err := agent.NewWithOptions(agent.Config{
		ReflectorURL: cfg.ReflectorURL,
		DeviceID:     DeviceID,
		DeviceName:   "Demo device",
		Secret:       secret,
		Ports:        []uint16{webPort, echoPort},
		HTTPPort:     webPort,
		Fingerprint:  cfg.Fingerprint,
	}, cfg.Logger.With("component", "demo"), agent.Options{DialLocal: dev.dial})
	if err != nil {
		return nil, fmt.Errorf("demo agent: %w", err)
	}
	d := &Demo{Password: password, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		a.Run(ctx)
		dev.close()
	}()
	return d, nil
}

// Wait returns when the demo agent has stopped.
func (d *Demo) Wait() { <-d.done }

// CurlLine is a command that fetches the demo page through the proxy as is.
// caFile, when set, is the self-signed certificate curl must trust.
func (d *Demo) CurlLine(proxyURL, caFile, domain string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "curl --proxy %s", proxyURL)
	if caFile != "" {
		fmt.Fprintf(&b, " --proxy-cacert %s", shellQuote(caFile))
	}
	fmt.Fprintf(&b, " --proxy-user %s http://%s.%s/", shellQuote(UserName+":"+d.Password), DeviceID, domain)
	return b.String()
}

// device serves the demo ports over in-memory pipes.
type device struct {
	web  *pipeListener
	srv  *http.Server
	once sync.Once
}

func newDevice() *device {
	d := &device{web: newPipeListener()}
	d.srv = &http.Server{Handler: http.HandlerFunc(page), ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(d.web)
	return d
}

// dial is the agent's local dialer: port 80 is the web page, port 7 echoes.
func (d *device) dial(ctx context.Context, port uint16) (net.Conn, error) {
	switch port {
	case webPort:
		return d.web.dial(ctx)
	case echoPort:
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

func (d *device) close() { d.once.Do(func() { d.srv.Close() }) }

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<title>Reflector demo device</title>
<h1>Hello from the demo device</h1>
<p>This page is served by the device <code>demo</code> through its tunnel.
You asked for <code>{{.Path}}</code> at {{.Time}}.</p>
`))

func page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTemplate.Execute(w, struct{ Path, Time string }{r.URL.Path, time.Now().UTC().Format(time.RFC3339)})
}

func randomString() (string, error) {
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
