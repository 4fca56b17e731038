package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/reflector-dev/reflector/tunnel/enroll"
)

// enrol obtains the device's secret with the enrolment key and keeps it in
// the state file, then sets up the tunnel's credentials with it. Failures
// that may pass (network, 5xx, 429) are retried with the connect loop's
// backoff, at least Retry-After apart, each kind logged once; a refusal
// (bad or expired key, quota, device id taken) is returned, as is ctx's
// error. The key is never logged.
func (a *Agent) enroll(ctx context.Context) error {
	path := a.cfg.StateFile
	// Before the key is spent: a secret that cannot be kept is lost at the
	// next restart, and the device id with it.
	if err := checkStateDir(path); err != nil {
		return fmt.Errorf("enrol device %s: %w", a.cfg.DeviceID, err)
	}
	client := newHTTPClient(a.dialer)
	defer client.CloseIdleConnections()
	b := newBackoff(a.opts)
	var fails failureLog
	a.log.Info("enrolling", "reflector", a.cfg.ReflectorURL, "state_file", path)
	for {
		secret, err := enroll.Request(ctx, client, a.cfg.ReflectorURL, a.cfg.EnrollKey, a.cfg.DeviceID)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			a.enrolled(secret)
			return nil
		}
		var retry *enroll.RetryError
		if !errors.As(err, &retry) {
			return a.refused(err)
		}
		delay := b.retryAfter(retry.After) // plain backoff when After is 0
		a.logFailure(&fails, opEnroll, err, delay)
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

// enrolled takes the new secret into use and keeps it in the state file.
// If the file cannot be written after all (the directory was checked before
// enrolling), the agent still connects: the device works until it restarts,
// and the log says what to do.
func (a *Agent) enrolled(secret string) {
	a.cfg.Secret, a.cfg.EnrollKey = secret, ""
	a.header = upgradeHeader(a.cfg)
	st := State{Device: a.cfg.DeviceID, Secret: secret, Reflector: a.cfg.ReflectorURL}
	if err := writeState(a.cfg.StateFile, st); err != nil {
		a.log.Error("enrolled, but the secret could not be saved: after a restart the device needs a new one "+
			"(reflector device rotate-secret, then $"+SecretEnv+")", "err", err)
		return
	}
	a.state = &st
	a.log.Info("enrolled; device secret saved", "state_file", a.cfg.StateFile)
}

// refused words a permanent enrolment failure, with the way out where there
// is a likely one.
func (a *Agent) refused(err error) error {
	var re *enroll.RefusedError
	if errors.As(err, &re) && re.Status == http.StatusConflict {
		return fmt.Errorf("enrol device %s: %w: if it enrolled before and lost its state file %s, "+
			"have the reflector's admin rotate its secret (reflector device rotate-secret %s) and give it in $%s, "+
			"or remove the device there and enrol again",
			a.cfg.DeviceID, err, a.cfg.StateFile, a.cfg.DeviceID, SecretEnv)
	}
	return fmt.Errorf("enrol device %s at %s: %w", a.cfg.DeviceID, a.cfg.ReflectorURL, err)
}

// logState says where the secret came from, once at start.
func (a *Agent) logState() {
	log := a.log.With("state_file", a.cfg.StateFile)
	log.Info("using the device secret from the state file")
	if a.keyUnused {
		log.Info("enrolment key not used: the device has enrolled already")
	}
	if a.state.Reflector != "" && a.state.Reflector != a.cfg.ReflectorURL {
		log.Warn("state file was written for another reflector URL", "enrolled_at", a.state.Reflector, "reflector", a.cfg.ReflectorURL)
	}
	if a.stateLoose {
		log.Warn("state file is readable by other users: chmod 600 it")
	}
}
