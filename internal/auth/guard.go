package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

const (
	// okAuditEvery bounds how often a successful login of the same user,
	// token and address is written to the audit log: proxy clients
	// authenticate on every request.
	okAuditEvery = time.Minute
	// maxOKSeen bounds the memory of recent successful logins.
	maxOKSeen = 10000
)

// Guard checks credentials against a store, throttled by a limiter.
type Guard struct {
	store   *store.Store
	limiter *Limiter
	log     *slog.Logger
	now     func() time.Time

	// checkHook, when set (tests only, before the guard is shared), runs
	// before each check of a credential against the store.
	checkHook func()

	mu     sync.Mutex
	okSeen map[string]time.Time // audit key of a recent successful login → when audited
}

// New returns a Guard. A nil logger discards.
func NewGuard(st *store.Store, limiter *Limiter, logger *slog.Logger) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{store: st, limiter: limiter, log: logger, now: time.Now, okSeen: make(map[string]time.Time)}
}

// User checks a user's name and secret, a password or an API token, sent
// from client (Basic credentials of the proxy). A password is checked
// inside an attempt on the user's and the address's keys (Limiter.Begin)
// and refused unchecked while either is locked out. Failures wrap
// store.ErrBadCredentials or are a *LockedOutError; when ctx ends while
// the check waits (for attempts in flight, for the argon2id gate), the
// error wraps ctx's and counts neither way.
func (g *Guard) User(ctx context.Context, client netip.Addr, name, secret string) (store.Credential, error) {
	if store.LooksLikeToken(secret) {
		g.checking()
		cred, err := g.store.Authenticate(ctx, name, secret)
		return g.tokenOutcome(client, name, cred, err)
	}
	addrKey, userKey := AddrKey(client), UserKey(name)
	a, wait, err := g.limiter.Begin(ctx, userKey, addrKey)
	if err != nil {
		return store.Credential{}, fmt.Errorf("check password of %q: %w", name, err)
	}
	if wait > 0 {
		return store.Credential{}, &LockedOutError{Wait: wait}
	}
	g.checking()
	cred, err := g.store.Authenticate(ctx, name, secret)
	switch {
	case err == nil:
		a.Release()
		g.limiter.Success(userKey)
		g.auditOK(store.AuditLogin, name, "", client)
		return cred, nil
	case errors.Is(err, store.ErrBadCredentials):
		return store.Credential{}, g.failed(store.AuditEvent{Kind: store.AuditLogin, User: name}, client, err, a.Fail())
	default:
		a.Release()
		return store.Credential{}, err
	}
}

// Token checks a bearer token sent from client.
func (g *Guard) Token(client netip.Addr, token string) (store.Credential, error) {
	g.checking()
	cred, err := g.store.AuthenticateToken(token)
	return g.tokenOutcome(client, "", cred, err)
}

// tokenOutcome throttles and audits a token check that has been done.
func (g *Guard) tokenOutcome(client netip.Addr, name string, cred store.Credential, err error) (store.Credential, error) {
	if err == nil {
		g.auditOK(store.AuditLogin, cred.User.Name, cred.TokenID, client)
		return cred, nil
	}
	if !errors.Is(err, store.ErrBadCredentials) {
		return store.Credential{}, err
	}
	return store.Credential{}, g.failedUnlessLocked(store.AuditEvent{Kind: store.AuditLogin, User: name}, client, err)
}

// Device checks an agent's device id and secret sent from client. Failures
// wrap store.ErrBadCredentials or store.ErrDisabled, or are a
// *LockedOutError; when ctx ends while the check waits (for attempts in
// flight, for the argon2id gate), the error wraps ctx's, and the attempt
// counts neither as a failure nor as a success.
//
// Device ids are public (host names), so a lockout per id would let anyone
// keep a device offline (issue 15). A generated secret (256 random bits) is
// therefore checked whatever the failures, as a token is; only its
// failures count, against the address. An adopted one (device add
// --secret-stdin, a WebTunnelAgent's password) may be guessable: it is
// checked inside an attempt on the pair of id and address, and refused
// unchecked while that pair is locked out, so the device still connects
// from its own address. An address alone never refuses a device unchecked:
// a fleet behind one NAT address keeps connecting while one of its devices
// is misconfigured.
func (g *Guard) Device(ctx context.Context, client netip.Addr, id, secret string) (store.Device, error) {
	adopted, err := g.store.DeviceSecretAdopted(id)
	if err != nil {
		return store.Device{}, err
	}
	addrKey := AddrKey(client)
	ev := store.AuditEvent{Kind: store.AuditAgent, Device: id}
	if !adopted {
		g.checking()
		d, err := g.store.CheckDeviceSecret(ctx, id, secret)
		if errors.Is(err, store.ErrBadCredentials) {
			return store.Device{}, g.failedUnlessLocked(ev, client, err)
		}
		return g.deviceOutcome(client, id, d, err)
	}
	pairKey := DeviceKey(id, client)
	a, wait, err := g.limiter.Begin(ctx, pairKey)
	if err != nil {
		return store.Device{}, fmt.Errorf("check secret of device %q: %w", id, err)
	}
	if wait > 0 {
		return store.Device{}, &LockedOutError{Wait: wait}
	}
	g.checking()
	d, err := g.store.CheckDeviceSecret(ctx, id, secret)
	if errors.Is(err, store.ErrBadCredentials) {
		return store.Device{}, g.failed(ev, client, err, a.Fail(addrKey))
	}
	a.Release()
	if err == nil || errors.Is(err, store.ErrDisabled) {
		g.limiter.Success(pairKey) // the secret was right
	}
	return g.deviceOutcome(client, id, d, err)
}

// deviceOutcome audits a device check that has been done and did not fail
// for a wrong secret.
func (g *Guard) deviceOutcome(client netip.Addr, id string, d store.Device, err error) (store.Device, error) {
	switch {
	case err == nil:
		g.auditOK(store.AuditAgent, "", id, client)
		return d, nil
	case errors.Is(err, store.ErrDisabled):
		// The secret was right; the device is switched off. Not a guess, so
		// not counted.
		g.store.Audit(store.AuditEvent{Kind: store.AuditAgent, Device: id, Client: addrString(client), Reason: "device disabled"})
	}
	return store.Device{}, err
}

// Enroll registers a device with an enrolment key sent from client and
// returns it with its secret. Wrong keys are throttled per address. Errors
// wrap the enroll package's reasons, which set the endpoint's status.
func (g *Guard) Enroll(client netip.Addr, key, id string) (store.Device, string, error) {
	d, secret, err := g.store.Enroll(key, id)
	err = enrollError(err)
	ev := store.AuditEvent{Kind: store.AuditEnroll, Device: id, Client: addrString(client)}
	if err == nil {
		ev.OK = true
		ev.Group = groupOf(d)
		g.store.Audit(ev)
		return d, secret, nil
	}
	if !errors.Is(err, store.ErrBadCredentials) {
		// Expired, used up, quota, taken id: the key was right.
		ev.Reason = err.Error()
		g.store.Audit(ev)
		return store.Device{}, "", err
	}
	return store.Device{}, "", g.failedUnlessLocked(ev, client, err)
}

// failed audits a checked failure, whose counting f tells, and the lockout
// it started, if any. It returns what the caller answers: err, or a
// *LockedOutError when one of the keys was locked out already (by other
// attempts while this one was checked).
func (g *Guard) failed(ev store.AuditEvent, client netip.Addr, err error, f Failed) error {
	ev.Client = addrString(client)
	if ev.Reason == "" {
		ev.Reason = err.Error()
	}
	g.store.Audit(ev)
	if f.Started {
		g.log.Warn("login failures: locked out", "kind", ev.Kind, "user", ev.User, "device", ev.Device,
			"client", ev.Client, "retry_after", f.Wait)
		g.store.Audit(store.AuditEvent{Kind: store.AuditLockout, User: ev.User, Device: ev.Device, Client: ev.Client,
			Reason: fmt.Sprintf("locked out for %s after failed %s", f.Wait, ev.Kind)})
	}
	if f.alreadyLocked() {
		return &LockedOutError{Wait: f.Wait}
	}
	return err
}

// failedUnlessLocked counts a failure of a credential checked without an
// attempt against the address, and audits it as failed does; from an
// address locked out already it is neither counted nor audited, and
// answered with the lockout.
func (g *Guard) failedUnlessLocked(ev store.AuditEvent, client netip.Addr, err error) error {
	f := g.limiter.FailureUnlessLocked(AddrKey(client))
	if f.alreadyLocked() {
		return &LockedOutError{Wait: f.Wait}
	}
	return g.failed(ev, client, err, f)
}

// auditOK writes a successful login to the audit log, at most once a minute
// for the same principal and address.
func (g *Guard) auditOK(kind, user, deviceOrToken string, client netip.Addr) {
	key := kind + "\x00" + user + "\x00" + deviceOrToken + "\x00" + addrString(client)
	now := g.now()
	g.mu.Lock()
	last, seen := g.okSeen[key]
	fresh := seen && now.Sub(last) < okAuditEvery
	if !fresh {
		if len(g.okSeen) >= maxOKSeen {
			clear(g.okSeen)
		}
		g.okSeen[key] = now
	}
	g.mu.Unlock()
	if fresh {
		return
	}
	ev := store.AuditEvent{Kind: kind, OK: true, User: user, Client: addrString(client)}
	if kind == store.AuditAgent {
		ev.Device = deviceOrToken
	} else {
		ev.Token = deviceOrToken
	}
	g.store.Audit(ev)
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func groupOf(d store.Device) string {
	if len(d.Groups) == 0 {
		return ""
	}
	return d.Groups[0]
}

// enrollError gives a store error of enrolment the enrolment endpoint's
// meaning. The store's error stays wrapped for the log and errors.Is.
func enrollError(err error) error {
	var to error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrExpired):
		to = enroll.ErrKeyExpired
	case errors.Is(err, store.ErrBadCredentials):
		to = enroll.ErrKeyInvalid
	case errors.Is(err, store.ErrQuota):
		to = enroll.ErrQuota
	case errors.Is(err, store.ErrExists):
		to = enroll.ErrDeviceExists
	case errors.Is(err, store.ErrInvalid):
		to = enroll.ErrDeviceInvalid
	default:
		return err
	}
	return fmt.Errorf("%w: %w", to, err)
}

// checking runs checkHook.
func (g *Guard) checking() {
	if g.checkHook != nil {
		g.checkHook()
	}
}
