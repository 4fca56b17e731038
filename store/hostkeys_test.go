package store

import (
	"bytes"
	"errors"
	"testing"
)

// A device's first host key is kept, a second one is not (the first is
// returned for the caller to compare), a reset forgets it, and removing
// the device removes it.
func TestHostKeyTrustedOnFirstUseResetAndRemovedWithDevice(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HostKey("pump-17"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("HostKey before any: %v, want ErrNotFound", err)
	}
	k, first, err := s.SetHostKey("pump-17", []byte("key-1"))
	if err != nil || !first || !bytes.Equal(k.Key, []byte("key-1")) || k.Added.IsZero() {
		t.Fatalf("first SetHostKey = %+v, %v, %v", k, first, err)
	}
	k, first, err = s.SetHostKey("pump-17", []byte("key-2"))
	if err != nil || first || !bytes.Equal(k.Key, []byte("key-1")) {
		t.Fatalf("second SetHostKey = %+v, %v, %v; want the first key kept", k, first, err)
	}
	if had, err := s.ResetHostKey("pump-17"); err != nil || !had {
		t.Fatalf("ResetHostKey = %v, %v", had, err)
	}
	if had, err := s.ResetHostKey("pump-17"); err != nil || had {
		t.Fatalf("second ResetHostKey = %v, %v; want nothing to reset", had, err)
	}
	if _, first, err := s.SetHostKey("pump-17", []byte("key-2")); err != nil || !first {
		t.Fatalf("SetHostKey after reset: first %v, %v", first, err)
	}
	if err := s.RemoveDevice("pump-17"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "pump-17"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HostKey("pump-17"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("HostKey of a device removed and added again: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"nope", "Not A Device"} {
		if _, _, err := s.SetHostKey(id, []byte("k")); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetHostKey(%q): %v, want ErrNotFound", id, err)
		}
		if _, err := s.ResetHostKey(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("ResetHostKey(%q): %v, want ErrNotFound", id, err)
		}
	}
}
