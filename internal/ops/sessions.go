package ops

import (
	"context"
	"fmt"
	"strconv"

	"github.com/reflector-dev/reflector/store"
)

// SignOutEverywhere ends every session of the caller (on the admin host and
// on device subdomains, in every browser) and returns how many it ended.
// The control socket is no user and has none.
func (s *Service) SignOutEverywhere(ctx context.Context, c Caller) (int, error) {
	if c.Local {
		return 0, fmt.Errorf("sign out everywhere: %w: the control socket is no user", ErrForbidden)
	}
	n, err := s.cfg.Store.DeleteUserSessions(c.User.Name)
	if err != nil {
		return 0, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditUserSet, User: c.User.Name,
		Reason: "signed out everywhere, " + strconv.Itoa(n) + " sessions ended"})
	// Streams opened through a device subdomain's session end with it.
	s.accessChanged()
	return n, nil
}
