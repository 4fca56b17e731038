package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// Version is the agent's version, sent to the reflector as
// "reflector-agent/<Version>". Release builds set it with
// -ldflags "-X github.com/reflector-dev/reflector/agent.Version=1.2.0".
var Version = "dev"

// stillFailingEvery is how often a failure that keeps repeating is logged
// again; every other repetition is logged at Debug.
const stillFailingEvery = 10 * time.Minute

// Options tune the reconnect delays. The zero value is the production
// behaviour (1 s doubling to 60 s, at least 60 s after a 401); tests shorten
// the delays. Fields left zero take their default.
type Options struct {
	// BaseDelay is the bound of the first reconnect delay (default 1 s).
	// Each delay is drawn uniformly from [0, bound); the bound doubles on
	// each failure and returns to BaseDelay once a tunnel stayed up 30 s.
	BaseDelay time.Duration
	// MaxDelay caps the bound (default 60 s).
	MaxDelay time.Duration
	// UnauthorizedDelay is the least wait after the reflector refused the
	// device's credentials (default 60 s); up to half of it is added as
	// jitter.
	UnauthorizedDelay time.Duration
	// DialLocal, if set, replaces the dial of LocalAddr:port for streams of
	// allowed ports: the in-process demo device serves its ports this way.
	DialLocal func(ctx context.Context, port uint16) (net.Conn, error)
	// LocalAddr, if valid, is the address the tunnel's connection to the
	// reflector is made from (not a proxy's). A swarm of simulated agents
	// on one machine gives each its own loopback address this way, so the
	// reflector sees a fleet of addresses, as in the field.
	LocalAddr netip.Addr
	// StockSmux runs the tunnel's smux on stock xtaci/smux instead of
	// tunnel/smuxsession, the agent's end since issue 21; the wire is the
	// same. Tests and A/B measurements compare the two with it.
	StockSmux bool
}

// Agent keeps one device's tunnel to the reflector up and serves the streams
// the reflector opens through it. Create it with New; Run it once.
type Agent struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	url    string // the tunnel endpoint, wss://host/tunnel/v1
	header http.Header
	dialer *websocket.Dialer

	// How the secret was found: nil state and an empty cfg.Secret mean Run
	// enrols first with cfg.EnrollKey.
	state      *State // the state file's, when the secret came from it
	keyUnused  bool   // an enrolment key was given, but state had a secret
	stateLoose bool   // the state file is readable by group or others
}

// New validates cfg and returns an agent with the default reconnect delays.
// A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	return NewWithOptions(cfg, logger, Options{})
}

// NewWithOptions is New with reconnect delays other than the defaults; tests
// use it to reconnect in milliseconds.
//
// Without cfg.Secret, it reads cfg.StateFile: a secret found there for
// cfg.DeviceID is used (and cfg.EnrollKey is not); a missing file with an
// enrolment key makes Run enrol first; a missing file without a key, or a
// file that cannot be read, does not parse, holds no secret or is another
// device's, is an error naming the file.
func NewWithOptions(cfg Config, logger *slog.Logger, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil { // also fills in the defaults
		return nil, err
	}
	var (
		state            *State
		keyUnused, loose bool
	)
	if cfg.Secret == "" { // Validate made sure there is a state file
		path, err := filepath.Abs(cfg.StateFile) // for clear logs, whatever the working directory
		if err != nil {
			return nil, fmt.Errorf("state file %s: %w", cfg.StateFile, err)
		}
		cfg.StateFile = path
		st, err := loadState(path, cfg.DeviceID)
		switch {
		case err == nil:
			state, keyUnused = &st, cfg.EnrollKey != ""
			cfg.Secret, cfg.EnrollKey = st.Secret, ""
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				loose = true
			}
		case errors.Is(err, errNoState) && cfg.EnrollKey != "":
			// Run enrols.
		case errors.Is(err, errNoState):
			return nil, fmt.Errorf("%w: device secret is not set (webtunnel.password, or $%s), and state file %s does not exist: enrol the device with an enrolment key ($%s)",
				ErrInvalidConfig, SecretEnv, path, EnrollKeyEnv)
		default:
			return nil, err
		}
	}
	u, err := tunnelURL(cfg.ReflectorURL)
	if err != nil {
		return nil, err
	}
	d, err := newDialer(cfg, opts.LocalAddr)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		cfg:        cfg,
		opts:       opts,
		log:        logger.With("device", cfg.DeviceID),
		url:        u,
		header:     upgradeHeader(cfg),
		dialer:     d,
		state:      state,
		keyUnused:  keyUnused,
		stateLoose: loose,
	}, nil
}

// Run connects to the reflector and keeps reconnecting, with backoff, until
// ctx ends; then it closes the tunnel, waits for every stream's goroutine
// and returns nil. Errors of single attempts are logged, not returned.
//
// An agent without a secret enrols first (see enrol). Run returns an error
// only when that fails for good: the reflector refused the enrolment, or
// the state file cannot be written.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Secret == "" {
		if err := a.enroll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	} else if a.state != nil {
		a.logState()
	}
	b := newBackoff(a.opts)
	var fails failureLog
	a.log.Info("connecting", "reflector", a.url)
	for {
		ws, err := a.dial(ctx)
		if ctx.Err() != nil {
			if ws != nil {
				ws.Close()
			}
			return nil
		}
		var delay time.Duration
		if err == nil {
			fails.reset()
			start := time.Now()
			a.log.Info("connected", "reflector", a.url)
			err = a.serve(ctx, ws)
			up := time.Since(start)
			if ctx.Err() != nil {
				return nil
			}
			b.connected(up)
			delay = b.next(false)
			a.log.Warn("disconnected", "err", describe(err), "connected_for", up.Round(time.Second))
			a.log.Info("connecting", "reflector", a.url, "retry_in", delay.Round(time.Millisecond))
		} else {
			var throttled *throttledError
			if errors.As(err, &throttled) {
				delay = b.retryAfter(throttled.after)
			} else {
				delay = b.next(errors.Is(err, errUnauthorized))
			}
			a.logFailure(&fails, opConnect, err, delay)
		}
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// serve runs the smux session over ws until it ends or ctx does.
func (a *Agent) serve(ctx context.Context, ws *websocket.Conn) error {
	sess, err := a.newSession(tunnel.NewWSConn(ws))
	if err != nil {
		ws.Close()
		return err
	}
	return a.serveSession(ctx, sess)
}

// serveSession accepts the streams the reflector opens until the session
// ends or ctx does, then closes the session and waits for its streams'
// goroutines. It returns why the session ended.
func (a *Agent) serveSession(ctx context.Context, sess session) error {
	// Streams live in sctx: when the session ends for any reason, their
	// local dials and splices end with it.
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sctx, func() { sess.Close() })
	var wg sync.WaitGroup
	defer func() {
		cancel()
		stop()
		sess.Close()
		wg.Wait()
	}()
	for {
		st, err := sess.acceptStream()
		if err != nil {
			return err
		}
		wg.Go(func() { a.serveStream(sctx, st) })
	}
}

// describe turns the error a session ended with into words for the log.
func describe(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "closed by the reflector"
	case errors.Is(err, smuxsession.ErrKeepAliveTimeout):
		return "tunnel closed (keep-alive timeout)"
	case errors.Is(err, io.ErrClosedPipe):
		return "tunnel closed (keep-alive timeout or connection lost)"
	}
	return err.Error()
}

// failureLog remembers the last failure that was logged, so a failure that
// repeats on every retry is logged once, then again at most every
// stillFailingEvery, and every change of failure at once.
type failureLog struct {
	key      string
	loggedAt time.Time
	since    time.Time
	count    int
	now      func() time.Time // nil means time.Now; tests replace it
}

func (f *failureLog) reset() { f.key, f.count = "", 0 }

// record counts one failure and says how to log it: first (a new kind of
// failure), again (the same one, and stillFailingEvery has passed), or
// neither.
func (f *failureLog) record(err error) (first, again bool) {
	now := time.Now()
	if f.now != nil {
		now = f.now()
	}
	key := failureKey(err)
	if key != f.key {
		f.key, f.count, f.since, f.loggedAt = key, 1, now, now
		return true, false
	}
	f.count++
	if now.Sub(f.loggedAt) >= stillFailingEvery {
		f.loggedAt = now
		return false, true
	}
	return false, false
}

// What a failed attempt tried to do, for logFailure.
const (
	opConnect = "connect"
	opEnroll  = "enrol"
)

// logFailure logs a failed attempt of op as f says: a new kind of failure
// at Warn, a repeated one at Debug, and again at Warn every
// stillFailingEvery.
func (a *Agent) logFailure(f *failureLog, op string, err error, delay time.Duration) {
	first, again := f.record(err)
	retry := delay.Round(time.Millisecond)
	switch {
	case first && errors.Is(err, errUnauthorized):
		a.log.Warn("device credentials refused (401); waiting", "retry_in", retry)
	case first && errors.Is(err, errThrottled):
		a.log.Warn("reflector is throttling this device's logins (429); waiting", "retry_in", retry)
	case first && errors.Is(err, errBusy):
		a.log.Warn("reflector is busy (503); waiting", "retry_in", retry)
	case first && op == opEnroll:
		a.log.Warn("cannot enrol", "err", err, "retry_in", retry)
	case first:
		a.log.Warn("cannot connect", "err", err, "retry_in", retry)
	case again:
		a.log.Warn("still failing", "op", op, "err", err, "attempts", f.count,
			"since", f.since.Format(time.RFC3339), "retry_in", retry)
	case op == opEnroll:
		a.log.Debug("enrol failed", "err", err, "retry_in", retry)
	default:
		a.log.Debug("connect failed", "err", err, "retry_in", retry)
	}
}

// failureKey identifies a kind of failure across retries. A network error's
// text carries the ephemeral local port ("read tcp 10.0.0.2:51234->..."),
// which differs on every attempt, so it is keyed by operation and cause.
func failureKey(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}
