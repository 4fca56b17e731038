package ops

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// DefaultEnrollLifetime is how long an enrolment key works when its maker
// says nothing of expiry. Unlike a token, a key is typed into many devices'
// set-up and easily left lying around; a day is enough to roll out a batch.
const DefaultEnrollLifetime = 24 * time.Hour

// EnrollKeys lists the enrolment keys (admins).
func (s *Service) EnrollKeys(ctx context.Context, c Caller) ([]store.EnrollKey, error) {
	if err := c.requireAdmin("list enrolment keys"); err != nil {
		return nil, err
	}
	return s.cfg.Store.EnrollKeys()
}

// CreateEnrollKey makes a key agents enrol themselves with into k.Group, at
// most k.Max times (0: no limit) until k.Expires (zero: never) (admins).
// The key is returned once.
func (s *Service) CreateEnrollKey(ctx context.Context, c Caller, k store.EnrollKey) (key string, rec store.EnrollKey, err error) {
	what := "create an enrolment key for group " + k.Group
	if err := c.requireAdmin(what); err != nil {
		return "", store.EnrollKey{}, err
	}
	if c.Devices != "" {
		// Agents choose their own ids when they enrol: a key would add
		// devices beyond the token's pattern.
		return "", store.EnrollKey{}, fmt.Errorf("%s: %w: the token is limited to devices %s", what, ErrForbidden, c.Devices)
	}
	key, rec, err = s.cfg.Store.CreateEnrollKey(store.EnrollKey{Group: k.Group, Max: k.Max, Expires: k.Expires})
	if err != nil {
		return "", store.EnrollKey{}, err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditEnrollKey, Group: rec.Group, Reason: "key " + rec.ID + ", " + DescribeEnrollKey(rec)})
	return key, rec, nil
}

// DescribeEnrollKey describes a key's limits: "up to 10 devices, expires
// ...".
func DescribeEnrollKey(k store.EnrollKey) string {
	desc := "any number of devices"
	switch k.Max {
	case 0:
	case 1:
		desc = "1 device"
	default:
		desc = "up to " + strconv.Itoa(k.Max) + " devices"
	}
	if k.Expires.IsZero() {
		return desc + ", no expiry"
	}
	return desc + ", expires " + DateTime(k.Expires)
}

// EnrollDevicePlaceholder stands for the device id in EnrollAgentLine; a
// shell word, unlike "<ID>", which the shell would take for a redirection.
const EnrollDevicePlaceholder = "DEVICE-ID"

// EnrollAgentLine is the command that runs our agent on a new device to
// enrol it with key, for the device's id to be put in place of
// EnrollDevicePlaceholder. The key rides in the environment, not as
// --enroll: a command line is visible to every user of the device.
func (s *Service) EnrollAgentLine(key string) string {
	return agent.EnrollKeyEnv + "=" + ShellQuoteAlways(key) + " " +
		s.AgentCommand("--device", EnrollDevicePlaceholder, AgentPorts(nil, 0))
}

// RemoveEnrollKey removes an enrolment key (admins). Devices that enrolled
// with it keep their own secrets.
func (s *Service) RemoveEnrollKey(ctx context.Context, c Caller, id string) error {
	if err := c.requireAdmin("remove enrolment key " + id); err != nil {
		return err
	}
	// RevokeEnrollKey does not return the record; look up its group for
	// the audit log first.
	group := ""
	if keys, err := s.cfg.Store.EnrollKeys(); err == nil {
		for _, k := range keys {
			if k.ID == id {
				group = k.Group
			}
		}
	}
	if err := s.cfg.Store.RevokeEnrollKey(id); err != nil {
		return err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditEnrollRm, Group: group, Reason: "key " + id})
	return nil
}
