package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

// enrollServer is a reflector with a real store behind both endpoints:
// enroll.Handler registers devices with Store.Enroll, and the tunnel
// endpoint checks their secrets with Store.CheckDeviceSecret. before, if
// set, may answer an enrolment request itself (returning true) before the
// handler sees it.
type enrollServer struct {
	*reflector
	mu      sync.Mutex
	enrols  []time.Time // every request to the enrolment endpoint
	before  func(w http.ResponseWriter, n int) bool
	handler http.Handler
}

func newEnrollServer(t *testing.T) *enrollServer {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddGroup(store.Group{Name: "field"}); err != nil {
		t.Fatalf("AddGroup: %v", err)
	}
	guard := auth.NewGuard(st, auth.NewLimiter(auth.LimiterConfig{}), nil)
	s := &enrollServer{handler: &enroll.Handler{
		Enroll: func(_ context.Context, r *http.Request, key, device string) (string, error) {
			_, secret, err := guard.Enroll(netip.MustParseAddr("127.0.0.1"), key, device)
			return secret, err
		},
	}}
	mux := http.NewServeMux()
	mux.HandleFunc(enroll.Path, func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.enrols = append(s.enrols, time.Now())
		n, before := len(s.enrols), s.before
		s.mu.Unlock()
		if before != nil && before(w, n) {
			return
		}
		s.handler.ServeHTTP(w, req)
	})
	s.reflector = startReflector(t, mux, func(device, secret string) error {
		if _, err := st.CheckDeviceSecret(context.Background(), device, secret); errors.Is(err, store.ErrBadCredentials) {
			return fmt.Errorf("%w: %w", tunnel.ErrUnauthorized, err)
		} else if err != nil {
			return err
		}
		return nil
	})
	s.reflector.store = st
	return s
}

func (s *enrollServer) enrollTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.enrols...)
}

// key makes an enrolment key of group "field" for at most max devices.
func (s *enrollServer) key(t *testing.T, max int) string {
	t.Helper()
	key, _, err := s.store.CreateEnrollKey(store.EnrollKey{Group: "field", Max: max})
	if err != nil {
		t.Fatalf("CreateEnrollKey: %v", err)
	}
	return key
}

// enrollConfig is an agent config that enrols with key and keeps its state in
// a fresh directory.
func (s *enrollServer) enrollConfig(t *testing.T, key string, ports ...uint16) Config {
	cfg := s.config(ports...)
	cfg.Secret = ""
	cfg.EnrollKey = key
	cfg.StateFile = filepath.Join(t.TempDir(), "agent.state")
	return cfg
}

func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestAgentEnrollsKeepsItsSecretAndReusesIt(t *testing.T) {
	s := newEnrollServer(t)
	key := s.key(t, 0)
	echo := echoListener(t)
	cfg := s.enrollConfig(t, key, echo)
	var logs lockedBuffer
	stop := runAgent(t, cfg, fastRetry, debugLogger(&logs))
	s.waitConnected(t, time.Time{})
	conn, err := s.hub.Dial(context.Background(), testDevice, echo, netip.Addr{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	echoOnce(t, conn, "enrolled")
	conn.Close()
	stop()

	fi, err := os.Stat(cfg.StateFile)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(cfg.StateFile)
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("state file %q: %v", data, err)
	}
	if st.Device != testDevice || st.Secret == "" || st.Reflector != s.srv.URL {
		t.Errorf("state %+v, want device %s, a secret, reflector %s", st, testDevice, s.srv.URL)
	}
	if _, err := s.store.CheckDeviceSecret(context.Background(), testDevice, st.Secret); err != nil {
		t.Errorf("the kept secret is refused: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(cfg.StateFile))
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files, want the state file alone (no temporary ones)", len(entries))
	}

	// A second start with the same command line, key and all, as a service
	// restarts: the state file's secret is used and the key is not.
	since := time.Now()
	runAgent(t, cfg, fastRetry, debugLogger(&logs))
	s.waitConnected(t, since)
	if n := len(s.enrollTimes()); n != 1 {
		t.Errorf("enrolment endpoint called %d times over two starts, want once", n)
	}
	out := logs.String()
	for _, want := range []string{"enrolling", "enrolled; device secret saved", "using the device secret from the state file", "enrolment key not used"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, key) || strings.Contains(out, st.Secret) {
		t.Errorf("key or secret logged:\n%s", out)
	}
}

func TestAgentEnrollmentRefusedIsFatal(t *testing.T) {
	s := newEnrollServer(t)
	good := s.key(t, 1)
	if _, err := s.store.AddDevice(store.Device{ID: "taken", Groups: []string{"field"}}); err != nil {
		t.Fatal(err)
	}
	usedUp := s.key(t, 1)
	if _, _, err := s.store.Enroll(usedUp, "other"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key, device string
		status            int
		hint              string
	}{
		{"garbage key", "rfe_garbage", testDevice, http.StatusUnauthorized, "enrolment key not valid"},
		{"key used up", usedUp, testDevice, http.StatusForbidden, "quota"},
		{"device id taken", good, "taken", http.StatusConflict, "rotate-secret taken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.enrollConfig(t, tt.key, 80)
			cfg.DeviceID = tt.device
			var logs lockedBuffer
			a, err := NewWithOptions(cfg, debugLogger(&logs), fastRetry)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			before := len(s.enrollTimes())
			err = a.Run(ctx)
			var re *enroll.RefusedError
			if !errors.Is(err, enroll.ErrRefused) || !errors.As(err, &re) || re.Status != tt.status {
				t.Fatalf("Run: %v, want a %d refusal", err, tt.status)
			}
			if ctx.Err() != nil {
				t.Error("Run kept retrying a refusal until the test's deadline")
			}
			if n := len(s.enrollTimes()) - before; n != 1 {
				t.Errorf("%d enrolment requests, want 1", n)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("error %q lacks %q", err, tt.hint)
			}
			if strings.Contains(err.Error(), tt.key) || strings.Contains(logs.String(), tt.key) {
				t.Errorf("key in the error or log:\n%v\n%s", err, logs.String())
			}
			if _, err := os.Stat(cfg.StateFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file after a refusal: %v, want none", err)
			}
		})
	}
	if n := len(s.attemptTimes()); n != 0 {
		t.Errorf("%d tunnel attempts after refused enrolments, want none", n)
	}
}

func TestAgentEnrollmentRetriesWhatMayPass(t *testing.T) {
	s := newEnrollServer(t)
	key := s.key(t, 0)
	// 503 twice (logged once), then 429 asking for a second (logged once,
	// obeyed), then the real endpoint.
	s.before = func(w http.ResponseWriter, n int) bool {
		switch n {
		case 1, 2:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"reflector cannot enrol devices now"}`+"\n")
			return true
		case 3:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"too many failed attempts; retry later"}`+"\n")
			return true
		}
		return false
	}
	var logs lockedBuffer
	runAgent(t, s.enrollConfig(t, key, 80), fastRetry, debugLogger(&logs))
	s.waitConnected(t, time.Time{})

	at := s.enrollTimes()
	if len(at) != 4 {
		t.Fatalf("%d enrolment requests, want 4", len(at))
	}
	if gap := at[3].Sub(at[2]); gap < time.Second {
		t.Errorf("request after a 429 with Retry-After: 1 came %v later, want ≥ 1s", gap)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="cannot enrol"`); n != 2 {
		t.Errorf("%d \"cannot enrol\" lines for two kinds of failure, want 2:\n%s", n, out)
	}
	if n := strings.Count(out, `msg="enrol failed"`); n != 1 {
		t.Errorf("%d debug lines for the repeated 503, want 1:\n%s", n, out)
	}
	if strings.Contains(out, key) {
		t.Errorf("key logged:\n%s", out)
	}
}

func TestAgentWithoutAWritableStateDirDoesNotSpendItsKey(t *testing.T) {
	s := newEnrollServer(t)
	cfg := s.enrollConfig(t, s.key(t, 0), 80)
	cfg.StateFile = filepath.Join(t.TempDir(), "missing-dir", "agent.state")
	a, err := NewWithOptions(cfg, nil, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), cfg.StateFile) {
		t.Fatalf("Run: %v, want an error naming the state file", err)
	}
	if n := len(s.enrollTimes()); n != 0 {
		t.Errorf("%d enrolment requests, want none", n)
	}
}

func TestAgentStateFileProblemsAreFatal(t *testing.T) {
	r := newReflector(t)
	tests := []struct {
		name    string
		content string // "" for no file
		key     string
		want    string
	}{
		{"not JSON", "secret=abc\n", "", "is not valid"},
		{"truncated", `{"device":"dev1","sec`, "rfe_x", "is not valid"},
		{"another device", `{"device":"pump-99","secret":"s","reflector":"https://r"}`, "rfe_x", `for device "pump-99"`},
		{"no secret", `{"device":"dev1"}`, "", "holds no secret"},
		{"missing without a key", "", "", "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := r.config(80)
			cfg.Secret, cfg.EnrollKey = "", tt.key
			cfg.StateFile = filepath.Join(t.TempDir(), "agent.state")
			if tt.content != "" {
				if err := os.WriteFile(cfg.StateFile, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := NewWithOptions(cfg, nil, fastRetry)
			if err == nil || !strings.Contains(err.Error(), cfg.StateFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error naming %s and saying %q", err, cfg.StateFile, tt.want)
			}
		})
	}
}

func TestAgentWithASecretIgnoresTheStateFile(t *testing.T) {
	r := newReflector(t)
	cfg := r.config(80)
	cfg.StateFile = filepath.Join(t.TempDir(), "agent.state")
	if err := os.WriteFile(cfg.StateFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWithOptions(cfg, nil, fastRetry); err != nil {
		t.Fatalf("New with a secret and an unreadable state file: %v", err)
	}
}

func TestAgentUsesAStateFileWrittenBefore(t *testing.T) {
	r := newReflector(t)
	cfg := r.config(echoListener(t))
	cfg.Secret = ""
	cfg.StateFile = filepath.Join(t.TempDir(), "agent.state")
	if err := writeState(cfg.StateFile, State{Device: testDevice, Secret: testSecret, Reflector: "https://old.example"}); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	runAgent(t, cfg, fastRetry, debugLogger(&logs))
	r.waitConnected(t, time.Time{})
	if !strings.Contains(logs.String(), "state file was written for another reflector URL") {
		t.Errorf("no warning about the reflector URL changing:\n%s", logs.String())
	}
}

func TestEnrollmentConfigValidation(t *testing.T) {
	base := Config{ReflectorURL: "https://r.example", DeviceID: "pump-17", Ports: []uint16{80}}
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"key and state", func(c *Config) { c.EnrollKey, c.StateFile = "rfe_k", "s" }, ""},
		{"state alone", func(c *Config) { c.StateFile = "s" }, ""},
		{"key and secret", func(c *Config) { c.EnrollKey, c.Secret, c.StateFile = "rfe_k", "s", "s" }, "both a device secret and an enrolment key"},
		{"key without state", func(c *Config) { c.EnrollKey = "rfe_k" }, "needs a state file"},
		{"secret as key", func(c *Config) { c.EnrollKey, c.StateFile = "hunter2-device-secret", "s" }, `does not start with "rfe_"`},
		{"nothing", func(c *Config) {}, "device secret is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.Ports = []uint16{80}
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Errorf("Validate quotes the key: %v", err)
			}
		})
	}
}

func TestDefaultStatePath(t *testing.T) {
	tests := []struct{ config, want string }{
		{"", "reflector-agent.state"},
		{"/etc/WebTunnelAgent.properties", "/etc/WebTunnelAgent.state"},
		{"conf/agent", "conf/agent.state"},
		{"a.b.properties", "a.b.state"},
		{"/etc/.properties", "/etc/.properties.state"},
	}
	for _, tt := range tests {
		if got := DefaultStatePath(tt.config); got != filepath.FromSlash(tt.want) {
			t.Errorf("DefaultStatePath(%q) = %q, want %q", tt.config, got, tt.want)
		}
	}
}

func TestWriteStateReplacesAtomicallyWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.state")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := State{Device: "pump-17", Secret: "s", Reflector: "https://r.example"}
	if err := writeState(path, want); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := loadState(path, "pump-17")
	if err != nil || got != want {
		t.Errorf("loadState: %+v, %v; want %+v", got, err, want)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d files beside the state file, want none", len(entries)-1)
	}
}
