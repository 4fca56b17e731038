package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// putRawTokens stores token records directly: CreateToken refuses an expiry
// in the past, and its transaction per token would make a backlog slow.
func putRawTokens(t *testing.T, s *Store, recs ...tokenRecord) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		for i := range recs {
			data, err := json.Marshal(&recs[i])
			if err != nil {
				return err
			}
			if err := b.Put([]byte(recs[i].ID), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tokenStored reports whether the tokens bucket holds id.
func tokenStored(t *testing.T, s *Store, id string) bool {
	t.Helper()
	var ok bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketTokens).Get([]byte(id)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

// expiringToken is the record of a token of alice that expires at exp
// (never when zero).
func expiringToken(id string, exp time.Time) tokenRecord {
	return tokenRecord{
		ID: id, User: "alice", Name: "t-" + id,
		Created: exp.Add(-24 * time.Hour), Expires: exp,
		SecretHash: dummySecretHash,
	}
}

func TestPruneTokensDeletesLongExpiredOnesHourly(t *testing.T) {
	s, clk := newSessionStore(t)
	now := clk.now()
	const (
		longGone  = "00000000000000a1" // expired 8 days ago
		recent    = "00000000000000a2" // expired 1 day ago
		never     = "00000000000000a3" // no expiry
		live      = "00000000000000a4" // expires tomorrow
		boundary  = "00000000000000a5" // expired exactly TokenExpiredKeep ago
		nextPass  = "00000000000000a6" // expired 8 days before the next pass
		undecoded = "00000000000000a7"
	)
	putRawTokens(t, s,
		expiringToken(longGone, now.Add(-8*24*time.Hour)),
		expiringToken(recent, now.Add(-24*time.Hour)),
		expiringToken(never, time.Time{}),
		expiringToken(live, now.Add(24*time.Hour)),
		expiringToken(boundary, now.Add(-TokenExpiredKeep)),
	)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte(undecoded), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	// An in-memory use time of the long-expired token, as CheckCredential
	// leaves for a token used before it expired.
	r := expiringToken(longGone, now.Add(-8*24*time.Hour))
	s.recordTokenUse(&r, now.Add(-9*24*time.Hour))

	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	if tokenStored(t, s, longGone) {
		t.Error("token expired 8 days ago not pruned")
	}
	for _, id := range []string{recent, never, live, boundary, undecoded} {
		if !tokenStored(t, s, id) {
			t.Errorf("token %s pruned", id)
		}
	}
	if holds(s.tokenUse, longGone) {
		t.Error("use time of a pruned token kept in memory")
	}
	if err := s.flushAudit(); err != nil {
		t.Fatal(err)
	}
	events := auditEvents(t, s, AuditFilter{Kind: AuditTokenPrune})
	if len(events) != 1 || events[0].Reason != "deleted 1 token expired more than 7 days ago" || !events[0].OK {
		t.Errorf("audit events %+v, want one token.pruned with the count", events)
	}

	// Tokens past the mark after this pass — one stored since, one that
	// was exactly at it — wait for the next pass, an hour on.
	putRawTokens(t, s, expiringToken(nextPass, now.Add(-TokenExpiredKeep-time.Minute)))
	clk.advance(time.Hour - time.Nanosecond)
	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	if !tokenStored(t, s, nextPass) || !tokenStored(t, s, boundary) {
		t.Fatal("pruned again within the hour")
	}
	clk.advance(time.Nanosecond)
	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	if tokenStored(t, s, nextPass) || tokenStored(t, s, boundary) {
		t.Error("long-expired token not pruned an hour after the last pass")
	}
	for _, id := range []string{recent, never, live} {
		if !tokenStored(t, s, id) {
			t.Errorf("token %s pruned by the second pass", id)
		}
	}
	if err := s.flushAudit(); err != nil {
		t.Fatal(err)
	}
	if n := len(auditEvents(t, s, AuditFilter{Kind: AuditTokenPrune})); n != 2 {
		t.Errorf("%d token.pruned events after two pruning passes, want 2", n)
	}

	// A pass that deletes nothing is not audited.
	clk.advance(time.Hour)
	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	if err := s.flushAudit(); err != nil {
		t.Fatal(err)
	}
	if n := len(auditEvents(t, s, AuditFilter{Kind: AuditTokenPrune})); n != 2 {
		t.Errorf("%d token.pruned events after an empty pass, want still 2", n)
	}
}

// Pruned tokens are gone from Tokens; recently expired ones are listed.
func TestPruneTokensKeepsRecentlyExpiredListed(t *testing.T) {
	s, clk := newSessionStore(t)
	now := clk.now()
	putRawTokens(t, s,
		expiringToken("00000000000000b1", now.Add(-8*24*time.Hour)),
		expiringToken("00000000000000b2", now.Add(-time.Hour)),
	)
	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	toks, err := s.Tokens("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].ID != "00000000000000b2" {
		t.Errorf("Tokens = %+v, want only the recently expired one", toks)
	}
}

func TestPruneTokensWalksMoreThanOneChunk(t *testing.T) {
	s, clk := newSessionStore(t)
	now := clk.now()
	const old = tokenPruneChunk + 100
	recs := make([]tokenRecord, 0, old+1)
	for i := range old {
		recs = append(recs, expiringToken(fmt.Sprintf("%016x", i), now.Add(-10*24*time.Hour)))
	}
	keep := expiringToken("ffffffffffffffff", time.Time{})
	recs = append(recs, keep)
	putRawTokens(t, s, recs...)
	if err := s.pruneTokens(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !tokenStored(t, s, keep.ID) {
		t.Errorf("%d tokens left, want only %s", n, keep.ID)
	}
	if err := s.flushAudit(); err != nil {
		t.Fatal(err)
	}
	events := auditEvents(t, s, AuditFilter{Kind: AuditTokenPrune})
	if want := fmt.Sprintf("deleted %d tokens expired more than 7 days ago", old); len(events) != 1 || events[0].Reason != want {
		t.Errorf("audit events %+v, want one with %q", events, want)
	}
}
