package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// DevicePage returns up to limit devices whose id sorts after `after` (""
// from the start), in id order, keeping only those keep accepts (nil keeps
// all). next is the id of the last device returned when more kept devices
// follow, else "": passed back as after, it continues where this page
// ended. limit <= 0 means no limit, as AuditFilter.Limit 0 does; the API
// passes 1 to 1000.
//
// The position is a device id, not an offset, so a page is stable while the
// fleet changes: a device added after the cursor shows up on a later page,
// one added before it does not, and no device is returned twice or skipped
// for having been pushed along.
//
// Cost: the scan starts at the cursor (a bbolt Seek, not a walk from the
// first key) and decodes one JSON record per device it reads, up to and
// including the first kept device past the page, which tells whether next
// is set. A keep that accepts few devices makes a page read many. keep runs
// inside the read transaction with each device's newest last-seen time; it
// must not call the Store's writing methods, which would wait for the
// transaction to end.
func (s *Store) DevicePage(after string, limit int, keep func(Device) bool) (page []Device, next string, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDevices).Cursor()
		k, v := c.First()
		if after != "" {
			// Seek lands on after itself or the first id past it.
			if k, v = c.Seek([]byte(after)); k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var rec deviceRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode device %q: %w", k, err)
			}
			d := s.withLastSeen(rec.device())
			if keep != nil && !keep(d) {
				continue
			}
			if limit > 0 && len(page) == limit {
				// A kept device past the page: there is a next one.
				next = page[len(page)-1].ID
				return nil
			}
			page = append(page, d)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list devices after %q: %w", truncate(after), err)
	}
	return page, next, nil
}
