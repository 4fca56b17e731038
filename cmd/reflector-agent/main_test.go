package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

const testKey = "rfe_0123456789abcdef_do-not-log-me"

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// enrollServer serves enroll.Path with enrol and refuses every tunnel. It
// returns the reflector flags for it and a count of enrolment requests.
func enrollServer(t *testing.T, enrol func(key, device string) (string, error)) ([]string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	mux := http.NewServeMux()
	h := &enroll.Handler{Enroll: func(_ context.Context, _ *http.Request, key, device string) (string, error) {
		n.Add(1)
		return enrol(key, device)
	}}
	mux.Handle(enroll.Path, h)
	mux.HandleFunc(tunnel.Path, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "wrong device credentials", http.StatusUnauthorized)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return []string{"--reflector", srv.URL, "--fingerprint", tunnel.Fingerprint(srv.Certificate().Raw)}, &n
}

func TestHelpDocumentsEnrollment(t *testing.T) {
	var out lockedBuffer
	if code := run(context.Background(), []string{"-h"}, env(nil), &out); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, want := range []string{"-enroll key", "-state file", "REFLECTOR_ENROLL_KEY", "reflector-agent.state", "mode 0600", ".state"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestEnrollmentKeyWithASecretIsAConfigurationError(t *testing.T) {
	var out lockedBuffer
	code := run(context.Background(), []string{"--reflector", "https://r.example", "--device", "pump-17", "--ports", "80",
		"--enroll", testKey, "--state", filepath.Join(t.TempDir(), "s")},
		env(map[string]string{"REFLECTOR_DEVICE_SECRET": "s3cret"}), &out)
	if code != 2 || !strings.Contains(out.String(), "both a device secret and an enrolment key") {
		t.Errorf("exit %d, output:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), testKey) || strings.Contains(out.String(), "s3cret") {
		t.Errorf("a credential in the output:\n%s", out.String())
	}
}

func TestRefusedEnrollmentExitsWithStatus1(t *testing.T) {
	flags, n := enrollServer(t, func(string, string) (string, error) {
		return "", enroll.ErrKeyInvalid
	})
	var out lockedBuffer
	state := filepath.Join(t.TempDir(), "agent.state")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, append(flags, "--device", "pump-17", "--ports", "80", "--state", state),
		env(map[string]string{"REFLECTOR_ENROLL_KEY": testKey}), &out)
	if code != 1 || ctx.Err() != nil {
		t.Fatalf("exit %d (context %v), want 1 at once; output:\n%s", code, ctx.Err(), out.String())
	}
	if !strings.Contains(out.String(), "enrolment refused (401 Unauthorized): enrolment key not valid") {
		t.Errorf("output does not say why:\n%s", out.String())
	}
	if strings.Contains(out.String(), testKey) {
		t.Errorf("key in the output:\n%s", out.String())
	}
	if n.Load() != 1 {
		t.Errorf("%d enrolment requests, want 1", n.Load())
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after a refusal: %v", err)
	}
}

func TestUnreadableStateFileIsAConfigurationError(t *testing.T) {
	state := filepath.Join(t.TempDir(), "agent.state")
	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	code := run(context.Background(), []string{"--reflector", "https://r.example", "--device", "pump-17", "--ports", "80",
		"--enroll", testKey, "--state", state}, env(nil), &out)
	if code != 2 || !strings.Contains(out.String(), state) {
		t.Errorf("exit %d, want 2 with the file named; output:\n%s", code, out.String())
	}
}

// The state file goes beside the config file by default, and an enrolment
// key from the environment is used.
func TestEnrollmentKeepsTheSecretBesideTheConfigFile(t *testing.T) {
	flags, n := enrollServer(t, func(key, device string) (string, error) {
		if key != testKey || device != "pump-17" {
			return "", enroll.ErrKeyInvalid
		}
		return "the-new-secret", nil
	})
	dir := t.TempDir()
	config := filepath.Join(dir, "WebTunnelAgent.properties")
	props := "webtunnel.deviceId = pump-17\nwebtunnel.ports = 80\n"
	if err := os.WriteFile(config, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "WebTunnelAgent.state")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append(flags, "--config", config), env(map[string]string{"REFLECTOR_ENROLL_KEY": testKey}), &out)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(state); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state file %s; output:\n%s", state, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after the context ended, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the context ended")
	}
	data, _ := os.ReadFile(state)
	var st struct{ Device, Secret, Reflector string }
	if err := json.Unmarshal(data, &st); err != nil || st.Device != "pump-17" || st.Secret != "the-new-secret" {
		t.Errorf("state file %q (%v)", data, err)
	}
	if n.Load() != 1 {
		t.Errorf("%d enrolment requests, want 1", n.Load())
	}
	if strings.Contains(out.String(), testKey) || strings.Contains(out.String(), "the-new-secret") {
		t.Errorf("a credential in the output:\n%s", out.String())
	}
}
