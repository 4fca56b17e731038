package ops

import (
	"context"
	"fmt"
	"strings"

	"github.com/reflector-dev/reflector/store"
)

// AuditKinds are the kinds of audit events, for filters; a family is a
// kind's part before the dot ("device"). Keep in step with the constants
// in store/audit.go.
var AuditKinds = []string{
	store.AuditLogin, store.AuditLockout, store.AuditAgent, store.AuditStream, store.AuditStreamCut, store.AuditRequest,
	store.AuditTokenCreate, store.AuditTokenRevoke, store.AuditTokenPrune,
	store.AuditDeviceAdd, store.AuditDeviceRm, store.AuditDeviceSet, store.AuditRotate,
	store.AuditEnable, store.AuditDisable, store.AuditEnroll, store.AuditHostKey,
	store.AuditEnrollKey, store.AuditEnrollRm,
	store.AuditGroupAdd, store.AuditGroupRm, store.AuditGroupSet,
	store.AuditUserAdd, store.AuditUserRm, store.AuditUserSet, store.AuditTOTP,
	store.AuditBackup, store.AuditDropped,
}

// AuditKindFilter checks a kind asked for: a kind, or a family with its
// dot ("device.") or without ("device"). It returns what the store's
// filter takes.
func AuditKindFilter(k string) (string, bool) {
	if k == "" {
		return "", true
	}
	for _, known := range AuditKinds {
		if known == k {
			return k, true
		}
	}
	family := strings.TrimSuffix(k, ".") + "."
	for _, known := range AuditKinds {
		if strings.HasPrefix(known, family) {
			return family, true
		}
	}
	return "", false
}

// AuditEvents returns audit events matching f, oldest first: all to an
// admin, a user's own (f.User is then theirs) to a user.
func (s *Service) AuditEvents(ctx context.Context, c Caller, f store.AuditFilter) ([]store.AuditEvent, error) {
	if !c.Admin() {
		if f.User != "" && !strings.EqualFold(f.User, c.User.Name) {
			return nil, fmt.Errorf("audit events of %s: %w: only your own", f.User, ErrForbidden)
		}
		f.User = c.User.Name
	}
	if k, ok := AuditKindFilter(f.Kind); ok {
		f.Kind = k
	} else {
		return nil, &store.FieldError{Field: "kind", Err: fmt.Errorf("audit kind %q %w: want one of %s, or a family such as device",
			f.Kind, store.ErrInvalid, strings.Join(AuditKinds, ", "))}
	}
	return s.cfg.Store.AuditEvents(f)
}

// Backup copies the database to path, which must not exist (the control
// socket only: the file lands on the reflector's host).
func (s *Service) Backup(ctx context.Context, c Caller, path string) (size int64, err error) {
	if !c.Local {
		return 0, fmt.Errorf("backup: %w: only on the reflector's host", ErrForbidden)
	}
	size, err = s.cfg.Store.Backup(path)
	if err != nil {
		return 0, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditBackup, Reason: path})
	return size, nil
}
