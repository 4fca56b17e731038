package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"
)

// Device is a device the reflector accepts tunnels from.
type Device struct {
	ID       string   // DNS label [a-z0-9-]{1,63}, no leading or trailing '-'
	Name     string   // display name, optional
	Groups   []string // sorted, without duplicates
	Ports    []uint16 // allow-list narrowing the agent's; empty means the agent's list; sorted
	HTTPPort uint16   // 0 means the agent's httpPort property
	// HTTPTLS says the device's web server speaks HTTPS. With HTTPPort set
	// it alone decides; with the agent's port, true overrides the agent's
	// httpsEnable property and false defers to it.
	HTTPTLS  bool
	Created  time.Time // set by AddDevice
	LastSeen time.Time // newest TouchDevice time, zero if never seen
	Disabled bool      // refused at the tunnel endpoint
}

// deviceRecord is the stored form of a device, a JSON value in the devices
// bucket under the device id. Only a hash of the secret is kept: sha256 for
// a generated secret, argon2id for an adopted one (password.go).
type deviceRecord struct {
	ID         string    `json:"id"`
	Name       string    `json:"name,omitempty"`
	Groups     []string  `json:"groups,omitempty"`
	Ports      []uint16  `json:"ports,omitempty"`
	HTTPPort   uint16    `json:"http_port,omitempty"`
	HTTPTLS    bool      `json:"http_tls,omitempty"`
	Created    time.Time `json:"created"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	SecretHash string    `json:"secret_hash"`
	Disabled   bool      `json:"disabled,omitempty"`
}

func (r *deviceRecord) device() Device {
	return Device{
		ID:       r.ID,
		Name:     r.Name,
		Groups:   r.Groups,
		Ports:    r.Ports,
		HTTPPort: r.HTTPPort,
		HTTPTLS:  r.HTTPTLS,
		Created:  r.Created,
		LastSeen: r.LastSeen,
		Disabled: r.Disabled,
	}
}

// AddDevice creates a device from d's ID, Name, Groups, Ports, HTTPPort and
// HTTPTLS, and returns its secret. The secret is shown to the caller once;
// the store keeps only its hash. Created is set to the current time,
// LastSeen is left zero and the device is enabled, whatever d holds. Every
// group must exist (ErrNotFound) and have room under its device quota
// (ErrQuota).
func (s *Store) AddDevice(d Device) (secret string, err error) {
	rec, secret, err := s.newDeviceRecord(d)
	if err != nil {
		return "", fmt.Errorf("add device %q: %w", truncate(d.ID), err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return insertDevice(tx, &rec) })
	if err != nil {
		return "", fmt.Errorf("add device %q: %w", d.ID, err)
	}
	// A last-seen time left from an earlier device with this id is not
	// this device's.
	s.lastSeen.forget(d.ID)
	return secret, nil
}

// newDeviceRecord validates d and returns the record of a new device made
// from it, with a fresh secret and its hash. AddDevice and Enroll share it;
// the record is stored by insertDevice.
func (s *Store) newDeviceRecord(d Device) (deviceRecord, string, error) {
	secret, err := newSecret()
	if err != nil {
		return deviceRecord{}, "", err
	}
	rec, err := s.validDeviceRecord(d)
	if err != nil {
		return deviceRecord{}, "", err
	}
	rec.SecretHash = hashSecret(secret)
	return rec, secret, nil
}

// validDeviceRecord validates d and returns the record of a new device made
// from it, without a secret hash: the caller hashes a generated secret
// with hashSecret and an adopted one with hashAdoptedSecret.
func (s *Store) validDeviceRecord(d Device) (deviceRecord, error) {
	if err := checkDeviceID(d.ID); err != nil {
		return deviceRecord{}, fieldErr("id", err)
	}
	if err := checkDeviceName(d.Name); err != nil {
		return deviceRecord{}, fieldErr("name", err)
	}
	groups, err := normalizeGroups(d.Groups)
	if err != nil {
		return deviceRecord{}, fieldErr("groups", err)
	}
	ports, err := normalizePorts(d.Ports)
	if err != nil {
		return deviceRecord{}, fieldErr("ports", err)
	}
	return deviceRecord{
		ID:       d.ID,
		Name:     d.Name,
		Groups:   groups,
		Ports:    ports,
		HTTPPort: d.HTTPPort,
		HTTPTLS:  d.HTTPTLS,
		Created:  s.now().UTC(),
	}, nil
}

// hashAdoptedSecret returns the stored form of an adopted device secret,
// which the caller has checked with checkDeviceSecret: argon2id with the
// device parameters (password.go), since a password chosen by a person may
// be guessable.
func (s *Store) hashAdoptedSecret(secret string) (string, error) {
	hash, err := s.argon.hashDeviceSecret(secret)
	if err != nil {
		return "", fmt.Errorf("hash device secret: %w", err)
	}
	return hash, nil
}

// insertDevice stores rec as a new device inside tx. The id must be free
// (ErrExists), and every group of the device must exist (ErrNotFound) and
// have room (ErrQuota). Checking inside the writing transaction is what
// makes the quota hold: bbolt has one writer at a time, so two devices
// cannot both take a group's last place.
func insertDevice(tx *bolt.Tx, rec *deviceRecord) error {
	b := tx.Bucket(bucketDevices)
	if b.Get([]byte(rec.ID)) != nil {
		return ErrExists
	}
	if err := checkGroupsExist(tx, "groups", rec.Groups); err != nil {
		return err
	}
	if err := checkGroupQuota(tx, rec.Groups, ""); err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode device record: %w", err)
	}
	return b.Put([]byte(rec.ID), data)
}

// AddDeviceWithSecret is AddDevice for a device that already has a secret:
// a fleet moved from another server (a WebTunnelAgent's password, issue 9)
// keeps the password baked into its configuration. The secret must be 1 to
// 1024 bytes without control characters (ErrInvalid); it is stored as an
// argon2id hash (hashAdoptedSecret), not as a generated one's SHA-256.
func (s *Store) AddDeviceWithSecret(d Device, secret string) error {
	if err := checkDeviceSecret(secret); err != nil {
		return fmt.Errorf("add device %q: %w", truncate(d.ID), fieldErr("secret", err))
	}
	rec, err := s.validDeviceRecord(d)
	if err != nil {
		return fmt.Errorf("add device %q: %w", truncate(d.ID), err)
	}
	// Hash before the write transaction, as AddUser does.
	if rec.SecretHash, err = s.hashAdoptedSecret(secret); err != nil {
		return fmt.Errorf("add device %q: %w", d.ID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return insertDevice(tx, &rec) })
	if err != nil {
		return fmt.Errorf("add device %q: %w", d.ID, err)
	}
	s.lastSeen.forget(d.ID)
	return nil
}

// Device returns the device with the given id, with its newest last-seen
// time even if that has not been written yet. The proxy asks for every
// request, so a found record is cached for up to a minute (see credCache);
// every write of a device record other than its last-seen time drops the
// cache (devicesChanged), and the last-seen time comes from the
// write-behind, which keeps written times in memory.
func (s *Store) Device(id string) (Device, error) {
	if !validDeviceID(id) {
		return Device{}, fmt.Errorf("device %q: %w", truncate(id), ErrNotFound)
	}
	if d, ok := s.devices.get(id); ok {
		return s.withLastSeen(d), nil
	}
	gen := s.devices.generation()
	var rec deviceRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getDevice(tx, id)
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("device %q: %w", id, err)
	}
	d := rec.device()
	s.devices.put(gen, id, d)
	return s.withLastSeen(d), nil
}

// Devices returns all devices sorted by id, with their newest last-seen
// times.
func (s *Store) Devices() ([]Device, error) {
	var devices []Device
	err := s.db.View(func(tx *bolt.Tx) error {
		// Byte order of the keys is id order.
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var rec deviceRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode device %q: %w", k, err)
			}
			devices = append(devices, rec.device())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	for i := range devices {
		devices[i] = s.withLastSeen(devices[i])
	}
	return devices, nil
}

// DeviceCount returns how many devices there are, without reading their
// records.
func (s *Store) DeviceCount() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketDevices).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return n, nil
}

// RemoveDevice deletes the device with the given id and its SSH host key.
// Its secret stops working at once; closing a tunnel it already has is the
// caller's job.
func (s *Store) RemoveDevice(id string) error {
	if !validDeviceID(id) {
		return fmt.Errorf("remove device %q: %w", truncate(id), ErrNotFound)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		if err := tx.Bucket(bucketHostKeys).Delete([]byte(id)); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("remove device %q: %w", id, err)
	}
	s.devicesChanged()
	s.lastSeen.forget(id)
	s.devSecrets.forget(id)
	return nil
}

// CheckDeviceSecret returns the device if secret is its secret, and an
// error wrapping ErrBadCredentials if it is not or the id is unknown. A
// disabled device's right secret fails with an error wrapping ErrDisabled
// instead; a wrong one is ErrBadCredentials as for any device, so only the
// holder of the secret learns that the device is disabled. An adopted
// secret's argon2id check waits for a CPU only while ctx lives: when ctx
// ends first, the error wraps ctx's, and the secret was not checked.
func (s *Store) CheckDeviceSecret(ctx context.Context, id, secret string) (Device, error) {
	if !validDeviceID(id) || secret == "" {
		return Device{}, fmt.Errorf("check device secret: %w", ErrBadCredentials)
	}
	var rec deviceRecord
	found := true
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getDevice(tx, id)
		if errors.Is(err, ErrNotFound) {
			found = false
			return nil
		}
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("check device secret for %q: %w", id, err)
	}
	stored := rec.SecretHash
	if !found {
		stored = dummySecretHash
	}
	ok, err := s.verifyDeviceSecret(ctx, id, stored, secret, found)
	if err != nil {
		return Device{}, fmt.Errorf("check device secret for %q: %w", id, err)
	}
	if !found || !ok {
		return Device{}, fmt.Errorf("check device secret for %q: %w", id, ErrBadCredentials)
	}
	if rec.Disabled {
		return Device{}, fmt.Errorf("check device secret for %q: %w", id, ErrDisabled)
	}
	return s.withLastSeen(rec.device()), nil
}

// verifyDeviceSecret is verifySecret for device id, whose stored form is
// stored (dummySecretHash when found is false). An argon2id form is first
// looked up in the cache of secrets that passed before, and otherwise
// checked through the store's gate; a pass of an existing device's secret
// is cached. An unknown id is checked against the cheap dummy, as it always
// was: making it cost argon2id would let anyone spend the reflector's CPU
// and memory with made-up ids. The gate waits only while ctx lives.
func (s *Store) verifyDeviceSecret(ctx context.Context, id, stored, secret string, found bool) (bool, error) {
	if !strings.HasPrefix(stored, argonPrefix) {
		return verifySecret(stored, secret)
	}
	if found && s.devSecrets.hit(id, stored, secret) {
		return true, nil
	}
	ok, err := s.argon.verifyPassword(ctx, stored, secret)
	if err != nil || !ok {
		return false, err
	}
	if found {
		s.devSecrets.put(id, stored, secret)
	}
	return true, nil
}

// TouchDevice records that the device was seen at t. It does not block on
// the database: the time is kept in memory, visible to Device and Devices at
// once, and written by the store's writer goroutine within about a second or
// on Close. Times older than the newest known one and calls after Close are
// ignored; times for ids that have no device are dropped at the next flush.
func (s *Store) TouchDevice(id string, t time.Time) {
	if t.IsZero() || !validDeviceID(id) {
		return
	}
	// UTC also drops the monotonic reading, as a stored time has none.
	s.lastSeen.put(id, t.UTC())
}

// CanAccess reports whether u may reach d: admins reach every device, other
// users the devices that share a group with them.
func CanAccess(u User, d Device) bool {
	if u.Role == RoleAdmin {
		return true
	}
	for _, g := range u.Groups {
		if slices.Contains(d.Groups, g) {
			return true
		}
	}
	return false
}

// withLastSeen returns d with its newest last-seen time, which may not be
// written yet.
func (s *Store) withLastSeen(d Device) Device {
	d.LastSeen = s.lastSeen.newestOf(d.ID, d.LastSeen)
	return d
}

// newLastSeen returns the write-behind of device last-seen times
// (TouchDevice).
func newLastSeen(db *bolt.DB) *writeBehind[string, time.Time] {
	return newWriteBehind(db, "last-seen times", time.Time.After, writeLastSeen)
}

// writeLastSeen is the apply step of the last-seen write-behind: it stores
// t as the device's last-seen time inside tx unless the stored one is as
// new. A written time stays in memory, so a read that took the record
// before the flush committed still sees it; a time for a device that does
// not exist (unknown or just removed) leaves, so memory holds at most the
// devices there are plus one batch of strays.
func writeLastSeen(tx *bolt.Tx, id string, t time.Time) (drop bool, err error) {
	gone, _, err := rewriteRecord(tx, bucketDevices, id, "device", func(rec *deviceRecord) bool {
		if !t.After(rec.LastSeen) {
			return false
		}
		rec.LastSeen = t
		return true
	})
	return gone, err
}

// getDevice reads and decodes a device record inside tx. It returns
// ErrNotFound itself (unwrapped) when there is no such device.
func getDevice(tx *bolt.Tx, id string) (deviceRecord, error) {
	return getRecord[deviceRecord](tx, bucketDevices, id, "device")
}

// DeviceUpdate is a change to a device; nil fields stay as they are.
type DeviceUpdate struct {
	Name     *string
	Groups   *[]string // every group must exist and have room (ErrQuota)
	Ports    *[]uint16
	HTTPPort *uint16
	HTTPTLS  *bool
}

// UpdateDevice applies u to the device and returns the result. A device
// moved into groups must find them existing (ErrNotFound) and with room
// (ErrQuota); groups it already belongs to are not counted again, so a
// device stays in a group whose quota was lowered below its member count.
func (s *Store) UpdateDevice(id string, u DeviceUpdate) (Device, error) {
	if u.Name != nil {
		if err := checkDeviceName(*u.Name); err != nil {
			return Device{}, fmt.Errorf("update device %q: %w", truncate(id), fieldErr("name", err))
		}
	}
	var groups []string
	if u.Groups != nil {
		var err error
		if groups, err = normalizeGroups(*u.Groups); err != nil {
			return Device{}, fmt.Errorf("update device %q: %w", truncate(id), fieldErr("groups", err))
		}
	}
	var ports []uint16
	if u.Ports != nil {
		var err error
		if ports, err = normalizePorts(*u.Ports); err != nil {
			return Device{}, fmt.Errorf("update device %q: %w", truncate(id), fieldErr("ports", err))
		}
	}
	rec, err := s.updateDevice(id, func(tx *bolt.Tx, rec *deviceRecord) error {
		if u.Name != nil {
			rec.Name = *u.Name
		}
		if u.Groups != nil {
			if err := checkGroupsExist(tx, "groups", groups); err != nil {
				return err
			}
			if err := checkGroupQuota(tx, addedGroups(rec.Groups, groups), rec.ID); err != nil {
				return err
			}
			rec.Groups = groups
		}
		if u.Ports != nil {
			rec.Ports = ports
		}
		if u.HTTPPort != nil {
			rec.HTTPPort = *u.HTTPPort
		}
		if u.HTTPTLS != nil {
			rec.HTTPTLS = *u.HTTPTLS
		}
		return nil
	})
	if err != nil {
		return Device{}, fmt.Errorf("update device %q: %w", truncate(id), err)
	}
	return s.withLastSeen(rec.device()), nil
}

// RotateDeviceSecret gives the device a new secret and returns it; the old
// one stops working at once. Dropping the connected agent is the caller's.
func (s *Store) RotateDeviceSecret(id string) (string, error) {
	secret, err := newSecret()
	if err != nil {
		return "", fmt.Errorf("rotate secret of device %q: %w", truncate(id), err)
	}
	_, err = s.updateDevice(id, func(_ *bolt.Tx, rec *deviceRecord) error {
		rec.SecretHash = hashSecret(secret)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("rotate secret of device %q: %w", truncate(id), err)
	}
	// The old entry could not match the new hash; it is dropped only to
	// free it.
	s.devSecrets.forget(id)
	return secret, nil
}

// SetDeviceDisabled disables or enables a device. A disabled device's
// secret check fails with ErrDisabled. Dropping the connected agent of a
// device being disabled is the caller's.
func (s *Store) SetDeviceDisabled(id string, disabled bool) error {
	_, err := s.updateDevice(id, func(_ *bolt.Tx, rec *deviceRecord) error {
		rec.Disabled = disabled
		return nil
	})
	if err != nil {
		verb := "enable"
		if disabled {
			verb = "disable"
		}
		return fmt.Errorf("%s device %q: %w", verb, truncate(id), err)
	}
	return nil
}

// updateDevice applies fn to the device's record in one write transaction
// and returns the record as written. Every change to an existing device,
// other than last-seen times, goes through here.
func (s *Store) updateDevice(id string, fn func(*bolt.Tx, *deviceRecord) error) (deviceRecord, error) {
	if !validDeviceID(id) {
		return deviceRecord{}, ErrNotFound
	}
	var rec deviceRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		rec, err = getDevice(tx, id)
		if err != nil {
			return err
		}
		if err := fn(tx, &rec); err != nil {
			return err
		}
		data, err := json.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("encode device record: %w", err)
		}
		return tx.Bucket(bucketDevices).Put([]byte(id), data)
	})
	if err != nil {
		return deviceRecord{}, err
	}
	s.devicesChanged()
	return rec, nil
}

// maxDeviceSecretLen bounds an adopted device secret, as maxPasswordLength
// bounds a password.
const maxDeviceSecretLen = 1024

// checkDeviceSecret accepts an adopted device secret: 1 to
// maxDeviceSecretLen bytes without control characters. The secret itself
// never appears in the error.
func checkDeviceSecret(secret string) error {
	if secret == "" {
		return fmt.Errorf("device secret %w: empty", ErrInvalid)
	}
	if len(secret) > maxDeviceSecretLen {
		return fmt.Errorf("device secret %w: longer than %d bytes", ErrInvalid, maxDeviceSecretLen)
	}
	for _, r := range secret {
		if unicode.IsControl(r) {
			return fmt.Errorf("device secret %w: control character %U", ErrInvalid, r)
		}
	}
	return nil
}
