package store

import (
	"errors"
	"testing"

	berrors "go.etcd.io/bbolt/errors"
)

// TestPingAnswersWhileOpen: an open store's database answers a read.
func TestPingAnswersWhileOpen(t *testing.T) {
	s := newTestStore(t)
	if err := s.Ping(); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
}

// TestPingAfterCloseFails: readiness checks see a closed database, with
// bbolt's cause kept for errors.Is.
func TestPingAfterCloseFails(t *testing.T) {
	s := newTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Ping()
	if err == nil {
		t.Fatal("Ping after Close: no error")
	}
	if !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Errorf("Ping after Close: %v; want it to wrap %v", err, berrors.ErrDatabaseNotOpen)
	}
}
