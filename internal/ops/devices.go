package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// Device is a device's record and, while its agent is connected, what its
// tunnel reports.
type Device struct {
	store.Device
	Online bool
	Tunnel tunnel.DeviceStatus // zero unless Online
}

// WithStatus joins d with its status in the hub, for fronts that list
// records they read themselves.
func (s *Service) WithStatus(d store.Device) Device {
	v := Device{Device: d}
	if s.cfg.Hub != nil {
		v.Tunnel, v.Online = s.cfg.Hub.Status(d.ID)
	}
	return v
}

// DeviceQuery selects a page of devices.
type DeviceQuery struct {
	// Q keeps devices whose id or name contains it, case-insensitively.
	Q string
	// Group keeps the devices of one group.
	Group string
	// Online keeps connected devices (true) or the others (false); nil
	// keeps both.
	Online *bool
	// After is the cursor: the page starts after the device of this id
	// ("" from the start). Devices are in id order, so a device added
	// while someone pages is seen once if its id is after the cursor and
	// not at all otherwise; none is seen twice or skipped.
	After string
	// Limit is the most devices a page holds, 1 to MaxPage; 0 is
	// DefaultPage.
	Limit int
}

// Page sizes.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// DevicePage is a page of devices. Next is the cursor of the following
// page, "" at the end.
type DevicePage struct {
	Devices []Device
	Next    string
}

// Devices returns a page of the devices the caller may reach.
func (s *Service) Devices(ctx context.Context, c Caller, q DeviceQuery) (DevicePage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return DevicePage{}, err
	}
	needle := strings.ToLower(q.Q)
	keep := func(d store.Device) bool {
		if !c.reaches(d) {
			return false
		}
		if q.Group != "" && !slices.Contains(d.Groups, q.Group) {
			return false
		}
		if needle != "" && !strings.Contains(d.ID, needle) && !strings.Contains(strings.ToLower(d.Name), needle) {
			return false
		}
		if q.Online != nil && s.online(d.ID) != *q.Online {
			return false
		}
		return true
	}
	ds, next, err := s.cfg.Store.DevicePage(q.After, limit, keep)
	if err != nil {
		return DevicePage{}, err
	}
	page := DevicePage{Devices: make([]Device, len(ds)), Next: next}
	for i, d := range ds {
		page.Devices[i] = s.WithStatus(d)
	}
	return page, nil
}

// pageLimit checks a requested page size.
func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPage, nil
	case n < 0 || n > MaxPage:
		return 0, &store.FieldError{Field: "limit", Err: fmt.Errorf("page size %d %w: want 1-%d", n, store.ErrInvalid, MaxPage)}
	}
	return n, nil
}

// online reports whether the device's agent is connected.
func (s *Service) online(id string) bool {
	if s.cfg.Hub == nil {
		return false
	}
	_, ok := s.cfg.Hub.Status(id)
	return ok
}

// Device returns one device the caller may reach. A device the caller may
// not reach is not found, as one that does not exist: a user learns nothing
// of other groups' devices.
func (s *Service) Device(ctx context.Context, c Caller, id string) (Device, error) {
	d, err := s.reachable(c, id)
	if err != nil {
		return Device{}, err
	}
	return s.WithStatus(d), nil
}

// reachable returns the record of device id if the caller may reach it,
// else store.ErrNotFound.
func (s *Service) reachable(c Caller, id string) (store.Device, error) {
	d, err := s.cfg.Store.Device(id)
	if err != nil {
		return store.Device{}, err
	}
	if !c.reaches(d) {
		return store.Device{}, fmt.Errorf("device %q: %w", id, store.ErrNotFound)
	}
	return d, nil
}

// manageable checks that the caller is an admin who may reach device id.
// An admin whose reach no token narrows reaches every device, so no look-up
// is made: the store's own call then reports a missing device, in its own
// words ("remove device \"x\": not found"), as the control socket always has.
func (s *Service) manageable(c Caller, what, id string) error {
	if err := c.requireAdmin(what); err != nil {
		return err
	}
	if c.Devices == "" {
		return nil
	}
	_, err := s.reachable(c, id)
	return err
}

// NewDevice is a device to add.
type NewDevice struct {
	ID       string
	Name     string
	Groups   []string
	Ports    []uint16
	HTTPPort uint16
	HTTPTLS  bool
	// Secret, when set, is the device's own secret to adopt (a
	// WebTunnelAgent's password); otherwise one is generated.
	Secret string
}

// Provisioned is a device with a secret just set: shown once.
type Provisioned struct {
	Device Device
	// Secret is the generated secret; "" when the device's own was adopted.
	Secret string
	// WasOnline: the agent that was connected with the old secret was
	// dropped (rotation).
	WasOnline bool
}

// AddDevice adds a device (admins).
func (s *Service) AddDevice(ctx context.Context, c Caller, n NewDevice) (Provisioned, error) {
	if err := c.requireAdmin("add device " + n.ID); err != nil {
		return Provisioned{}, err
	}
	d := store.Device{ID: n.ID, Name: n.Name, Groups: n.Groups, Ports: n.Ports, HTTPPort: n.HTTPPort, HTTPTLS: n.HTTPTLS}
	if c.Devices != "" && !c.reaches(d) {
		return Provisioned{}, fmt.Errorf("add device %s: %w: the token is limited to devices %s", n.ID, ErrForbidden, c.Devices)
	}
	var secret string
	if n.Secret != "" {
		if err := s.cfg.Store.AddDeviceWithSecret(d, n.Secret); err != nil {
			return Provisioned{}, err
		}
	} else {
		var err error
		if secret, err = s.cfg.Store.AddDevice(d); err != nil {
			return Provisioned{}, err
		}
	}
	reason := describeGroups(n.Groups) + ", " + describePorts(n.Ports)
	if n.HTTPTLS {
		reason += ", " + describeHTTPTLS(true, n.HTTPPort)
	}
	if n.Secret != "" {
		reason += ", own secret"
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: n.ID, Reason: reason})
	added, err := s.cfg.Store.Device(n.ID)
	if err != nil {
		return Provisioned{}, err
	}
	return Provisioned{Device: s.WithStatus(added), Secret: secret}, nil
}

// UpdateDevice changes a device's record (admins) and returns the result
// with a description of what changed, as the audit log has it.
func (s *Service) UpdateDevice(ctx context.Context, c Caller, id string, u store.DeviceUpdate) (Device, string, error) {
	if err := s.manageable(c, "change device "+id, id); err != nil {
		return Device{}, "", err
	}
	d, err := s.cfg.Store.UpdateDevice(id, u)
	if err != nil {
		return Device{}, "", err
	}
	var changes []string
	if u.Groups != nil {
		changes = append(changes, describeGroups(d.Groups))
	}
	if u.Ports != nil {
		changes = append(changes, describePorts(d.Ports))
	}
	if u.Name != nil {
		if d.Name == "" {
			changes = append(changes, "no name")
		} else {
			changes = append(changes, fmt.Sprintf("name %q", d.Name))
		}
	}
	if u.HTTPPort != nil {
		if d.HTTPPort == 0 {
			changes = append(changes, "the agent's HTTP port")
		} else {
			changes = append(changes, fmt.Sprintf("HTTP port %d", d.HTTPPort))
		}
	}
	if u.HTTPTLS != nil {
		changes = append(changes, describeHTTPTLS(d.HTTPTLS, d.HTTPPort))
	}
	desc := strings.Join(changes, ", ")
	s.audit(c, store.AuditEvent{Kind: store.AuditDeviceSet, Device: id, Reason: desc})
	// Leaving a group or a port may take access away from open streams.
	s.accessChanged()
	return s.WithStatus(d), desc, nil
}

// RotateDeviceSecret gives a device a new secret (admins); the old one
// stops working and a connected agent is dropped.
func (s *Service) RotateDeviceSecret(ctx context.Context, c Caller, id string) (Provisioned, error) {
	if err := s.manageable(c, "rotate the secret of device "+id, id); err != nil {
		return Provisioned{}, err
	}
	secret, err := s.cfg.Store.RotateDeviceSecret(id)
	if err != nil {
		return Provisioned{}, err
	}
	// The old secret no longer works, but the agent that authenticated
	// with it keeps its tunnel until dropped.
	online := s.disconnect(id)
	s.audit(c, store.AuditEvent{Kind: store.AuditRotate, Device: id})
	d, err := s.cfg.Store.Device(id)
	if err != nil {
		return Provisioned{}, err
	}
	return Provisioned{Device: s.WithStatus(d), Secret: secret, WasOnline: online}, nil
}

// SetDeviceDisabled disables a device, refusing its agent and closing its
// tunnel, or enables it again (admins). It reports whether a tunnel was
// closed.
func (s *Service) SetDeviceDisabled(ctx context.Context, c Caller, id string, disabled bool) (closed bool, err error) {
	what := "enable device " + id
	if disabled {
		what = "disable device " + id
	}
	if err := s.manageable(c, what, id); err != nil {
		return false, err
	}
	if err := s.cfg.Store.SetDeviceDisabled(id, disabled); err != nil {
		return false, err
	}
	if !disabled {
		s.audit(c, store.AuditEvent{Kind: store.AuditEnable, Device: id})
		return false, nil
	}
	closed = s.disconnect(id)
	s.audit(c, store.AuditEvent{Kind: store.AuditDisable, Device: id})
	s.accessChanged()
	return closed, nil
}

// RemoveDevice removes a device and closes its tunnel (admins). It reports
// whether a tunnel was closed.
func (s *Service) RemoveDevice(ctx context.Context, c Caller, id string) (closed bool, err error) {
	if err := s.manageable(c, "remove device "+id, id); err != nil {
		return false, err
	}
	if err := s.cfg.Store.RemoveDevice(id); err != nil {
		return false, err
	}
	// The secret no longer works, but a tunnel authenticated before the
	// removal would live on until it drops; close it now.
	closed = s.disconnect(id)
	s.audit(c, store.AuditEvent{Kind: store.AuditDeviceRm, Device: id})
	s.accessChanged()
	return closed, nil
}

// ImportDevices adds devices with their own secrets, all or none (admins).
// With check set it only checks them. Errors for single devices are
// *store.ImportError values in the returned error's tree.
func (s *Service) ImportDevices(ctx context.Context, c Caller, ds []store.DeviceImport, check bool) error {
	if err := c.requireAdmin("import devices"); err != nil {
		return err
	}
	// As for AddDevice: a token limited to some devices adds only those.
	if c.Devices != "" {
		for _, d := range ds {
			if !c.reaches(d.Device) {
				return fmt.Errorf("import device %s: %w: the token is limited to devices %s", d.Device.ID, ErrForbidden, c.Devices)
			}
		}
	}
	if check {
		return s.cfg.Store.CheckDeviceImport(ds)
	}
	if err := s.cfg.Store.ImportDevices(ds); err != nil {
		return err
	}
	for _, d := range ds {
		s.audit(c, store.AuditEvent{Kind: store.AuditDeviceAdd, Device: d.Device.ID, Reason: "imported"})
	}
	return nil
}
