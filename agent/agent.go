package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/xtaci/smux"

	"github.com/reflector-dev/reflector/tunnel"
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
}

// New validates cfg and returns an agent with the default reconnect delays.
// A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	return NewWithOptions(cfg, logger, Options{})
}

// NewWithOptions is New with reconnect delays other than the defaults; tests
// use it to reconnect in milliseconds.
func NewWithOptions(cfg Config, logger *slog.Logger, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil { // also fills in the defaults
		return nil, err
	}
	u, err := tunnelURL(cfg.ReflectorURL)
	if err != nil {
		return nil, err
	}
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{
		cfg:    cfg,
		opts:   opts,
		log:    logger.With("device", cfg.DeviceID),
		url:    u,
		header: upgradeHeader(cfg),
		dialer: d,
	}, nil
}

// Run connects to the reflector and keeps reconnecting, with backoff, until
// ctx ends; then it closes the tunnel, waits for every stream's goroutine
// and returns nil. Errors of single attempts are logged, not returned.
func (a *Agent) Run(ctx context.Context) error {
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
			unauthorized := errors.Is(err, errUnauthorized)
			delay = b.next(unauthorized)
			a.logFailure(&fails, err, unauthorized, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// serve runs the smux session over ws until it ends or ctx does.
func (a *Agent) serve(ctx context.Context, ws *websocket.Conn) error {
	sess, err := smux.Client(tunnel.NewWSConn(ws), tunnel.MuxConfig())
	if err != nil { // only on a bad config, which MuxConfig is not
		ws.Close()
		return fmt.Errorf("start smux session: %w", err)
	}
	return a.serveSession(ctx, sess)
}

// serveSession accepts the streams the reflector opens until the session
// ends or ctx does, then closes the session and waits for its streams'
// goroutines. It returns why the session ended.
func (a *Agent) serveSession(ctx context.Context, sess *smux.Session) error {
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
		st, err := sess.AcceptStream()
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

func (a *Agent) logFailure(f *failureLog, err error, unauthorized bool, delay time.Duration) {
	first, again := f.record(err)
	retry := delay.Round(time.Millisecond)
	switch {
	case first && unauthorized:
		a.log.Warn("device credentials refused (401); waiting", "retry_in", retry)
	case first:
		a.log.Warn("cannot connect", "err", err, "retry_in", retry)
	case again:
		a.log.Warn("still failing", "err", err, "attempts", f.count,
			"since", f.since.Format(time.RFC3339), "retry_in", retry)
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
