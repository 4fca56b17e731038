package ops

import (
	"context"

	"github.com/reflector-dev/reflector/store"
)

// ResetHostKey forgets the SSH host key kept for a device (admins), so that
// the next browser SSH session trusts the key the device shows then: what
// an admin does after checking that a device's key really changed (a new
// installation), since a changed key is otherwise refused
// (internal/webssh). It reports whether a key was kept; resetting none is
// not an error. Audited as device.hostkey with reason "reset".
func (s *Service) ResetHostKey(ctx context.Context, c Caller, id string) (had bool, err error) {
	if err := s.manageable(c, "reset the SSH host key of device "+id, id); err != nil {
		return false, err
	}
	had, err = s.cfg.Store.ResetHostKey(id)
	if err != nil {
		return false, err
	}
	reason := "reset"
	if !had {
		reason = "reset: none was kept"
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditHostKey, Device: id, Reason: reason})
	return had, nil
}

// HostKey returns the SSH host key kept for a device the caller may reach;
// store.ErrNotFound when none is (or the device is not the caller's).
func (s *Service) HostKey(ctx context.Context, c Caller, id string) (store.HostKey, error) {
	if _, err := s.reachable(c, id); err != nil {
		return store.HostKey{}, err
	}
	return s.cfg.Store.HostKey(id)
}
