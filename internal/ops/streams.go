package ops

import (
	"context"
	"fmt"

	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
)

// DeviceStreams returns the open streams and forwarded requests to a device
// the caller may reach, oldest first. A user sees only their own streams;
// an admin sees everyone's.
func (s *Service) DeviceStreams(ctx context.Context, c Caller, id string) ([]proxy.Stream, error) {
	if _, err := s.reachable(c, id); err != nil {
		return nil, err
	}
	if s.cfg.Streams == nil {
		return []proxy.Stream{}, nil
	}
	all := s.cfg.Streams.Streams(id)
	if c.Admin() {
		return all, nil
	}
	mine := all[:0:0]
	for _, st := range all {
		if st.User == c.User.Name {
			mine = append(mine, st)
		}
	}
	return mine, nil
}

// CutStream ends one open stream to a device (admins). The stream's own
// audit entry, written as it closes, says it was cut; this one says who
// cut it.
func (s *Service) CutStream(ctx context.Context, c Caller, device, streamID string) (proxy.Stream, error) {
	if err := s.manageable(c, "cut a stream to device "+device, device); err != nil {
		return proxy.Stream{}, err
	}
	var (
		st proxy.Stream
		ok bool
	)
	if s.cfg.Streams != nil {
		st, ok = s.cfg.Streams.CutStream(device, streamID)
	}
	if !ok {
		return proxy.Stream{}, fmt.Errorf("stream %q of device %s: %w", streamID, device, store.ErrNotFound)
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditStreamCut, User: st.User, Device: device, Port: st.Port,
		Reason: fmt.Sprintf("stream %s from %s", st.ID, addrOrDash(st.Client))})
	return st, nil
}
