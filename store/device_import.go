package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// DeviceImport is one device for ImportDevices: what AddDevice takes, and
// the secret the device already has.
type DeviceImport struct {
	Device Device
	Secret string // as for AddDeviceWithSecret
}

// ImportError is why ImportDevices refused one of its devices. The errors
// of one call are joined, in index order, under the returned error; Err
// wraps ErrInvalid, ErrExists, ErrNotFound (a group) or ErrQuota, and its
// text names neither the index nor the secret, so a caller can put its own
// position (a file's line) in front.
type ImportError struct {
	Index int    // into the slice given to ImportDevices
	ID    string // the device id as given (truncated)
	Err   error
}

func (e *ImportError) Error() string {
	return fmt.Sprintf("device %d (%q): %v", e.Index, e.ID, e.Err)
}

func (e *ImportError) Unwrap() error { return e.Err }

// ImportDevices adds all of ds or none of them, in one transaction. Every
// device is checked as AddDeviceWithSecret checks it — valid fields and
// secret, a free id, existing groups with room under their quotas, counting
// the devices before it in ds — and an id may appear only once in ds. When
// any device is refused, nothing is stored and the error joins one
// *ImportError per refused device (errors.Is still finds ErrExists and the
// others through it).
func (s *Store) ImportDevices(ds []DeviceImport) error {
	recs, problems := s.importRecords(ds)
	// Hashing is the slow part, so an import that would be refused is
	// refused before it, and it is done before the write transaction, as
	// AddUser's is. The checks are made again inside the transaction: the
	// database may have changed meanwhile.
	err := s.db.View(func(tx *bolt.Tx) error {
		return joinImportErrors(append(problems, checkImport(tx, recs)...))
	})
	if err == nil {
		err = s.hashImportSecrets(ds, recs)
	}
	if err != nil {
		return fmt.Errorf("import %s: %w", plural(len(ds), "device"), err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := joinImportErrors(checkImport(tx, recs)); err != nil {
			return err
		}
		b := tx.Bucket(bucketDevices)
		for _, r := range recs {
			rec := &r.rec
			data, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode device record: %w", err)
			}
			if err := b.Put([]byte(rec.ID), data); err != nil {
				return fmt.Errorf("write device %q: %w", rec.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", plural(len(ds), "device"), err)
	}
	s.devicesChanged()
	for _, r := range recs {
		s.lastSeen.forget(r.rec.ID)
	}
	return nil
}

// CheckDeviceImport runs the checks of ImportDevices on ds and reports what
// ImportDevices would refuse, storing nothing: a dry run, and a way to
// report every problem of a file whose other lines could not be parsed. It
// hashes no secret, so it is fast however many devices ds holds.
func (s *Store) CheckDeviceImport(ds []DeviceImport) error {
	recs, problems := s.importRecords(ds)
	err := s.db.View(func(tx *bolt.Tx) error {
		return joinImportErrors(append(problems, checkImport(tx, recs)...))
	})
	if err != nil {
		return fmt.Errorf("check import of %s: %w", plural(len(ds), "device"), err)
	}
	return nil
}

// importRecord is a valid device of an import and its index in the slice
// given.
type importRecord struct {
	index int
	rec   deviceRecord
}

// importRecords validates ds one by one and returns the records of the
// valid ones, without their secret hashes (hashImportSecrets), and an
// *ImportError for each other.
func (s *Store) importRecords(ds []DeviceImport) ([]importRecord, []*ImportError) {
	recs := make([]importRecord, 0, len(ds))
	var problems []*ImportError
	for i, d := range ds {
		err := fieldErr("secret", checkDeviceSecret(d.Secret))
		var rec deviceRecord
		if err == nil {
			rec, err = s.validDeviceRecord(d.Device)
		}
		if err != nil {
			problems = append(problems, &ImportError{Index: i, ID: truncate(d.Device.ID), Err: err})
			continue
		}
		recs = append(recs, importRecord{index: i, rec: rec})
	}
	return recs, problems
}

// hashImportSecrets sets the secret hash of each of recs from its device's
// secret in ds. An argon2id hash takes tens of milliseconds, so a fleet of
// thousands is hashed by GOMAXPROCS workers at once (as many as the gate
// lets run), not one by one.
func (s *Store) hashImportSecrets(ds []DeviceImport, recs []importRecord) error {
	var (
		next atomic.Int64 // index into recs of the next record to hash
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(recs) {
					return
				}
				r := &recs[i]
				hash, err := s.hashAdoptedSecret(ds[r.index].Secret)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("device %q: %w", r.rec.ID, err))
					mu.Unlock()
					return
				}
				r.rec.SecretHash = hash
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkImport checks the valid records of an import against the database
// and each other, as insertDevice checks one device, and returns an
// *ImportError for each refused one. The quota counts are taken once and
// advanced device by device, so a group's last places go to the first
// devices that ask for them; checkGroupQuota's scan per device would make
// an import of n devices cost n scans of the bucket.
func checkImport(tx *bolt.Tx, recs []importRecord) []*ImportError {
	var problems []*ImportError
	refuse := func(r *importRecord, err error) {
		problems = append(problems, &ImportError{Index: r.index, ID: r.rec.ID, Err: err})
	}
	devices := tx.Bucket(bucketDevices)
	first := make(map[string]int, len(recs)) // id → index of its first device
	quota := make(map[string]int)            // group → MaxDevices, for groups with one
	var ok []*importRecord
	for i := range recs {
		r := &recs[i]
		if prev, dup := first[r.rec.ID]; dup {
			refuse(r, fmt.Errorf("device %q %w: given twice, first as device %d", r.rec.ID, ErrExists, prev))
			continue
		}
		first[r.rec.ID] = r.index
		if devices.Get([]byte(r.rec.ID)) != nil {
			refuse(r, fmt.Errorf("device %q %w", r.rec.ID, ErrExists))
			continue
		}
		if err := checkGroupsExist(tx, "groups", r.rec.Groups); err != nil {
			refuse(r, err)
			continue
		}
		for _, g := range r.rec.Groups {
			if _, seen := quota[g]; seen {
				continue
			}
			rec, err := getGroup(tx, g)
			if err != nil {
				return append(problems, &ImportError{Index: r.index, ID: r.rec.ID, Err: fmt.Errorf("group %q: %w", g, err)})
			}
			quota[g] = rec.MaxDevices
		}
		ok = append(ok, r)
	}
	limited := false
	for _, n := range quota {
		limited = limited || n > 0
	}
	if !limited {
		return problems
	}
	counts, err := countNames(devices, "device")
	if err != nil {
		// Not one device's fault; the first is as good as any to carry it.
		return append(problems, &ImportError{Index: recs[0].index, ID: recs[0].rec.ID, Err: err})
	}
	for _, r := range ok {
		var over error
		for _, g := range r.rec.Groups {
			if quota[g] > 0 && counts[g]+1 > quota[g] && over == nil {
				over = fieldErr("groups", fmt.Errorf("group %q: %w: it would hold %d devices with this one, at most %d allowed",
					g, ErrQuota, counts[g]+1, quota[g]))
			}
		}
		if over != nil {
			refuse(r, over)
			continue
		}
		for _, g := range r.rec.Groups {
			counts[g]++
		}
	}
	return problems
}

// joinImportErrors joins problems in index order, or returns nil for none.
func joinImportErrors(problems []*ImportError) error {
	if len(problems) == 0 {
		return nil
	}
	slices.SortStableFunc(problems, func(a, b *ImportError) int { return a.Index - b.Index })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}
