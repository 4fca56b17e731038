package store

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sessionT0 is when the session tests' clocks start.
var sessionT0 = time.Date(2030, 6, 1, 9, 0, 0, 0, time.UTC)

// newSessionStore is a store with users alice (admin) and bob (user, in
// group "ops") and a manual clock at sessionT0.
func newSessionStore(t *testing.T) (*Store, *manualClock) {
	t.Helper()
	s := newTestStore(t)
	clk := setClock(s, sessionT0)
	addGroups(t, s, "ops")
	if err := s.AddUser("alice", "alice-pw", RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("bob", "bob-pw", RoleUser, []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// mustCreateSession creates a session and fails the test if it cannot.
func mustCreateSession(t *testing.T, s *Store, user, device string) (string, Session) {
	t.Helper()
	token, sess, err := s.CreateSession(user, device)
	if err != nil {
		t.Fatalf("CreateSession(%q, %q): %v", user, device, err)
	}
	return token, sess
}

// checkSessionOK checks token on device and fails the test if it is
// refused.
func checkSessionOK(t *testing.T, s *Store, token, device string) (Session, User) {
	t.Helper()
	sess, u, err := s.CheckSession(token, device)
	if err != nil {
		t.Fatalf("CheckSession on %s: %v", sessionHost(device), err)
	}
	return sess, u
}

// checkSessionRefused checks token on device and fails the test unless it
// is refused with ErrBadCredentials, and with ErrExpired exactly when
// expired is true. The message must not contain the token or its secret.
func checkSessionRefused(t *testing.T, s *Store, token, device string, expired bool) {
	t.Helper()
	sess, u, err := s.CheckSession(token, device)
	if err == nil {
		t.Fatalf("CheckSession on %s accepted: %+v, %+v", sessionHost(device), sess, u)
	}
	if !errors.Is(err, ErrBadCredentials) {
		t.Errorf("CheckSession on %s: %v; want ErrBadCredentials", sessionHost(device), err)
	}
	if got := errors.Is(err, ErrExpired); got != expired {
		t.Errorf("CheckSession on %s: %v; errors.Is(ErrExpired) = %v, want %v", sessionHost(device), err, got, expired)
	}
	if sess != (Session{}) || u.Name != "" {
		t.Errorf("refused CheckSession returned %+v, %+v; want zero values", sess, u)
	}
	assertNoSessionTokenIn(t, err, token)
}

// assertNoSessionTokenIn fails if err's message contains token or, for a
// well-formed token, its secret part.
func assertNoSessionTokenIn(t *testing.T, err error, token string) {
	t.Helper()
	if err == nil || len(token) < 8 {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, token) || hasKeyShape(SessionPrefix, token) && strings.Contains(msg, token[len(token)-16:]) {
		t.Errorf("error %.200q contains the token", msg)
	}
}

// rawSession reads the stored session record, bypassing in-memory use
// times; ok is false if there is none.
func rawSession(t *testing.T, s *Store, id string) (r sessionRecord, ok bool) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getSession(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		ok = err == nil
		return err
	})
	if err != nil {
		t.Fatalf("raw session %s: %v", id, err)
	}
	return r, ok
}

// rawSessionCount returns the number of records in the sessions bucket.
func rawSessionCount(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSessions).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// putRawSession stores r as it is, for states the API cannot make.
func putRawSession(t *testing.T, s *Store, r sessionRecord) {
	t.Helper()
	data, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Put([]byte(r.ID), data) })
	if err != nil {
		t.Fatal(err)
	}
}

func flushSessions(t *testing.T, s *Store) {
	t.Helper()
	if err := s.sessionUse.flush(); err != nil {
		t.Fatalf("flush session use: %v", err)
	}
}

func TestCreateSessionIsPrefixAnd24RandomBytes(t *testing.T) {
	s, _ := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "bob", "pump-17")
	if !strings.HasPrefix(token, "rfs_") || len(token) != 36 {
		t.Fatalf("token %q: want rfs_ and 32 base64url characters", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(token[4:])
	if err != nil || len(b) != 24 {
		t.Fatalf("token body: %d bytes, %v; want 24", len(b), err)
	}
	want := Session{ID: hex.EncodeToString(b[:8]), User: "bob", Device: "pump-17", Created: sessionT0, LastSeen: sessionT0}
	if sess != want {
		t.Errorf("session = %+v, want %+v", sess, want)
	}
	r, ok := rawSession(t, s, sess.ID)
	if !ok {
		t.Fatal("no stored record")
	}
	if r.SecretHash != hashSecret(string(b[8:])) {
		t.Error("stored secret hash is not hashSecret of the 16 secret bytes")
	}
	raw, _ := json.Marshal(&r)
	if strings.Contains(string(raw), token[4:]) || strings.Contains(string(raw), token[len(token)-16:]) {
		t.Errorf("stored record %s contains the token", raw)
	}
}

func TestCheckSessionReturnsSessionAndCurrentUser(t *testing.T) {
	s, clk := newSessionStore(t)
	token, created := mustCreateSession(t, s, "bob", "")
	clk.advance(time.Hour)
	// A change to the user after login shows in the next check.
	if err := s.SetUserRole("bob", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	sess, u := checkSessionOK(t, s, token, "")
	want := created
	want.LastSeen = sessionT0.Add(time.Hour)
	if sess != want {
		t.Errorf("session = %+v, want %+v", sess, want)
	}
	if u.Name != "bob" || u.Role != RoleAdmin || len(u.Groups) != 1 || u.Groups[0] != "ops" {
		t.Errorf("user = %+v, want bob, now admin, in ops", u)
	}
}

func TestCreateSessionRefusesUnknownUserAndInvalidDevice(t *testing.T) {
	s, _ := newSessionStore(t)
	for _, tc := range []struct {
		user, device string
		want         error
	}{
		{"carol", "", ErrNotFound},
		{"Alice", "", ErrNotFound}, // names are case-sensitive
		{"", "", ErrNotFound},
		{"bad name", "", ErrNotFound},
		{strings.Repeat("a", 1000), "", ErrNotFound},
		{"alice", "Pump-17", ErrInvalid},
		{"alice", "pump_17", ErrInvalid},
		{"alice", "-pump", ErrInvalid},
		{"alice", "pump.example.com", ErrInvalid},
		{"alice", strings.Repeat("p", 64), ErrInvalid},
	} {
		token, sess, err := s.CreateSession(tc.user, tc.device)
		if !errors.Is(err, tc.want) || token != "" || sess != (Session{}) {
			t.Errorf("CreateSession(%.20q, %q) = %q, %+v, %v; want %v", tc.user, tc.device, token, sess, err, tc.want)
		}
	}
	if n := rawSessionCount(t, s); n != 0 {
		t.Errorf("%d session records after refused creations, want 0", n)
	}
}

func TestCheckSessionRefusesWrongSecret(t *testing.T) {
	s, _ := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "alice", "")
	// Same id, every secret byte flipped.
	b, _ := base64.RawURLEncoding.DecodeString(token[4:])
	for i := 8; i < len(b); i++ {
		b[i] ^= 0xff
	}
	wrong := SessionPrefix + base64.RawURLEncoding.EncodeToString(b)
	checkSessionRefused(t, s, wrong, "", false)
	// The session itself is untouched.
	checkSessionOK(t, s, token, "")
	if _, ok := rawSession(t, s, sess.ID); !ok {
		t.Error("a wrong secret deleted the session")
	}
}

func TestCheckSessionRefusesUnknownID(t *testing.T) {
	s, _ := newSessionStore(t)
	mustCreateSession(t, s, "alice", "")
	unknown, _, _, err := newRandomKey(SessionPrefix)
	if err != nil {
		t.Fatal(err)
	}
	checkSessionRefused(t, s, unknown, "", false)
}

// Anything a client can put in a cookie is refused without a panic.
func TestCheckSessionRefusesGarbage(t *testing.T) {
	s, _ := newSessionStore(t)
	token, _ := mustCreateSession(t, s, "alice", "")
	apiToken, _, _, _ := newRandomKey(TokenPrefix)
	for name, garbage := range map[string]string{
		"empty":              "",
		"prefix only":        SessionPrefix,
		"one short":          token[:len(token)-1],
		"one long":           token + "A",
		"over-long":          token + strings.Repeat("A", 1<<20),
		"binary":             SessionPrefix + string([]byte{0, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29}),
		"NUL inside":         token[:10] + "\x00" + token[11:],
		"CR inside":          token[:10] + "\r" + token[11:],
		"padding":            token[:len(token)-1] + "=",
		"standard base64":    token[:10] + "+" + token[11:],
		"wrong prefix":       "rfx_" + token[4:],
		"token prefix":       "rfl_" + token[4:],
		"API token":          apiToken,
		"upper-case prefix":  "RFS_" + token[4:],
		"leading space":      " " + token[:len(token)-1],
		"cookie with name":   "reflector_session=" + token,
		"invalid UTF-8 body": SessionPrefix + strings.Repeat("\xc3", 32),
	} {
		t.Run(name, func(t *testing.T) {
			checkSessionRefused(t, s, garbage, "", false)
			if err := s.DeleteSession(garbage); err != nil {
				t.Errorf("DeleteSession: %v; want nil", err)
			}
		})
	}
	checkSessionOK(t, s, token, "")
}

// A session is valid on the one host it was made for: a device-A session is
// worthless on device B and on the admin host, and an admin-host session on
// any device (issue 4).
func TestSessionIsBoundToItsDevice(t *testing.T) {
	s, _ := newSessionStore(t)
	hosts := []string{"", "pump-a", "pump-b"}
	for _, made := range hosts {
		token, _ := mustCreateSession(t, s, "bob", made)
		for _, used := range hosts {
			if used == made {
				sess, _ := checkSessionOK(t, s, token, used)
				if sess.Device != made {
					t.Errorf("session made for %s has Device %q", sessionHost(made), sess.Device)
				}
				continue
			}
			t.Run(fmt.Sprintf("made on %s used on %s", sessionHost(made), sessionHost(used)), func(t *testing.T) {
				checkSessionRefused(t, s, token, used, false)
			})
		}
		// Not a valid device id at all.
		checkSessionRefused(t, s, token, "PUMP-A", false)
	}
}

func TestSessionExpiresAfter8HoursIdle(t *testing.T) {
	s, clk := newSessionStore(t)
	used, _ := mustCreateSession(t, s, "alice", "")
	idle, idleSess := mustCreateSession(t, s, "alice", "")

	clk.advance(SessionIdle - time.Nanosecond)
	checkSessionOK(t, s, used, "")
	clk.advance(time.Nanosecond)
	checkSessionRefused(t, s, idle, "", true)
	// Refused at once and every time until deleted, though the record is
	// still there for the writer to delete.
	checkSessionRefused(t, s, idle, "", true)
	if _, ok := rawSession(t, s, idleSess.ID); !ok {
		t.Fatal("record deleted before the writer ran; this test wants to see the refusal come first")
	}
	flushSessions(t, s)
	if _, ok := rawSession(t, s, idleSess.ID); ok {
		t.Error("expired session still stored after a flush")
	}
	checkSessionRefused(t, s, idle, "", false) // now merely unknown
	checkSessionOK(t, s, used, "")
}

// Use keeps a session alive, but not past SessionMax: a session used every
// 7 hours lives 24 hours, whether its uses were written yet or are only in
// memory.
func TestSessionUsedEvery7HoursLivesUntil24Hours(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			s, clk := newSessionStore(t)
			token, _ := mustCreateSession(t, s, "alice", "pump-a")
			for i := 1; i <= 3; i++ {
				clk.advance(7 * time.Hour)
				checkSessionOK(t, s, token, "pump-a")
				if flush {
					flushSessions(t, s)
				}
			}
			clk.advance(3*time.Hour - time.Nanosecond) // 24 h less 1 ns
			checkSessionOK(t, s, token, "pump-a")
			clk.advance(time.Nanosecond)
			checkSessionRefused(t, s, token, "pump-a", true)
		})
	}
}

func TestSessionExpiresAfter24HoursHoweverBusy(t *testing.T) {
	s, clk := newSessionStore(t)
	token, _ := mustCreateSession(t, s, "bob", "")
	for i := 0; i < 24*60-1; i++ {
		clk.advance(time.Minute)
		checkSessionOK(t, s, token, "")
	}
	clk.advance(time.Minute)
	checkSessionRefused(t, s, token, "", true)
}

func TestDeleteSessionEndsItAtOnce(t *testing.T) {
	s, _ := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "alice", "")
	other, _ := mustCreateSession(t, s, "alice", "")
	checkSessionOK(t, s, token, "")
	if err := s.DeleteSession(token); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	checkSessionRefused(t, s, token, "", false)
	if _, ok := rawSession(t, s, sess.ID); ok {
		t.Error("record still stored")
	}
	if err := s.DeleteSession(token); err != nil {
		t.Errorf("DeleteSession of an ended session: %v; want nil", err)
	}
	checkSessionOK(t, s, other, "")
	// No in-memory use left behind to be written for a deleted session.
	flushSessions(t, s)
	if _, ok := rawSession(t, s, sess.ID); ok {
		t.Error("flush re-created a deleted session")
	}
}

// The id is public (logs, audit log): knowing it must not be enough to
// end someone else's session.
func TestDeleteSessionNeedsTheSecret(t *testing.T) {
	s, _ := newSessionStore(t)
	token, _ := mustCreateSession(t, s, "alice", "")
	b, _ := base64.RawURLEncoding.DecodeString(token[4:])
	b[len(b)-1] ^= 1
	if err := s.DeleteSession(SessionPrefix + base64.RawURLEncoding.EncodeToString(b)); err != nil {
		t.Errorf("DeleteSession with a wrong secret: %v; want nil", err)
	}
	checkSessionOK(t, s, token, "")
}

func TestDeleteUserSessions(t *testing.T) {
	s, _ := newSessionStore(t)
	a1, _ := mustCreateSession(t, s, "alice", "")
	a2, _ := mustCreateSession(t, s, "alice", "pump-a")
	b1, _ := mustCreateSession(t, s, "bob", "")
	checkSessionOK(t, s, a1, "")
	n, err := s.DeleteUserSessions("alice")
	if err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions(alice) = %d, %v; want 2, nil", n, err)
	}
	checkSessionRefused(t, s, a1, "", false)
	checkSessionRefused(t, s, a2, "pump-a", false)
	checkSessionOK(t, s, b1, "")
	for _, user := range []string{"alice", "carol", "", "not a name"} {
		if n, err := s.DeleteUserSessions(user); err != nil || n != 0 {
			t.Errorf("DeleteUserSessions(%q) = %d, %v; want 0, nil", user, n, err)
		}
	}
	if left := held(s.sessionUse); left != 0 {
		t.Errorf("%d in-memory use times left for deleted sessions, want 0", left)
	}
	flushSessions(t, s)
	if n := rawSessionCount(t, s); n != 1 {
		t.Errorf("%d session records, want bob's 1", n)
	}
}

func TestRemoveUserEndsTheirSessions(t *testing.T) {
	s, _ := newSessionStore(t)
	alice, _ := mustCreateSession(t, s, "alice", "")
	bob, _ := mustCreateSession(t, s, "bob", "pump-a")
	checkSessionOK(t, s, alice, "")
	if err := s.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	checkSessionRefused(t, s, alice, "", false)
	checkSessionOK(t, s, bob, "pump-a")
	if n := rawSessionCount(t, s); n != 1 {
		t.Errorf("%d session records, want bob's 1", n)
	}
	// A user of the same name made later does not inherit the session.
	if err := s.AddUser("alice", "new-pw", RoleAdmin, nil); err != nil {
		t.Fatal(err)
	}
	checkSessionRefused(t, s, alice, "", false)
}

func TestSetPasswordEndsTheUsersSessions(t *testing.T) {
	s, _ := newSessionStore(t)
	alice, _ := mustCreateSession(t, s, "alice", "")
	aliceDev, _ := mustCreateSession(t, s, "alice", "pump-a")
	bob, _ := mustCreateSession(t, s, "bob", "")
	if err := s.SetPassword("alice", "new-pw"); err != nil {
		t.Fatal(err)
	}
	checkSessionRefused(t, s, alice, "", false)
	checkSessionRefused(t, s, aliceDev, "pump-a", false)
	checkSessionOK(t, s, bob, "")
	if _, err := s.CheckPassword(context.Background(), "alice", "new-pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
	// A refused change ends nothing.
	if err := s.SetPassword("bob", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetPassword(bob, \"\") = %v; want ErrInvalid", err)
	}
	checkSessionOK(t, s, bob, "")
}

// A session whose user is gone (a record RemoveUser did not get to) is
// refused, and deleted by the writer.
func TestSessionOfMissingUserIsRefused(t *testing.T) {
	s, _ := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "alice", "")
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketUsers).Delete([]byte("alice")) })
	if err != nil {
		t.Fatal(err)
	}
	checkSessionRefused(t, s, token, "", false)
	flushSessions(t, s)
	if _, ok := rawSession(t, s, sess.ID); ok {
		t.Error("session of a missing user still stored after a flush")
	}
}

// Last-seen is kept in memory on every use and written at most once a
// minute per session, and on Close.
func TestSessionLastSeenWrittenAtMostOnceAMinuteAndOnClose(t *testing.T) {
	s, clk := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "alice", "")
	use := func() {
		t.Helper()
		got, _ := checkSessionOK(t, s, token, "")
		if now := clk.now(); !got.LastSeen.Equal(now) {
			t.Errorf("CheckSession LastSeen = %v, want now %v", got.LastSeen, now)
		}
		flushSessions(t, s)
	}
	stored := func() time.Time {
		t.Helper()
		r, ok := rawSession(t, s, sess.ID)
		if !ok {
			t.Fatal("session record missing")
		}
		return r.LastSeen
	}

	clk.advance(59 * time.Second)
	use()
	if got := stored(); !got.Equal(sessionT0) {
		t.Errorf("stored LastSeen 59s after creation = %v, want still %v", got, sessionT0)
	}
	clk.advance(time.Second)
	use()
	if got, want := stored(), sessionT0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("stored LastSeen a minute after creation = %v, want %v", got, want)
	}
	// A refused use is not a use.
	clk.advance(5 * time.Minute)
	checkSessionRefused(t, s, token, "pump-a", false)
	flushSessions(t, s)
	if got, want := stored(), sessionT0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("stored LastSeen after a refused use = %v, want %v", got, want)
	}

	clk.advance(time.Minute)
	want := clk.now()
	if _, _, err := s.CheckSession(token, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := open(s.Dir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	r, ok := rawSession(t, s2, sess.ID)
	if !ok || !r.LastSeen.Equal(want) {
		t.Errorf("stored LastSeen after reopen = %v (found %v), want %v", r.LastSeen, ok, want)
	}
	setClock(s2, want.Add(SessionIdle-time.Second))
	checkSessionOK(t, s2, token, "")
}

// A use marked for writing races with a flush that already wrote a newer
// time: the next flush must not write again within the minute.
func TestSessionLastSeenFlushRechecksStoredTime(t *testing.T) {
	s, clk := newSessionStore(t)
	_, sess := mustCreateSession(t, s, "alice", "")
	r, _ := rawSession(t, s, sess.ID)
	first := clk.now().Add(time.Minute)
	s.recordSessionUse(&r, first)
	flushSessions(t, s)
	// r still holds the stale stored time, as a check that read it before
	// the flush would.
	s.recordSessionUse(&r, first.Add(10*time.Second))
	flushSessions(t, s)
	if got, _ := rawSession(t, s, sess.ID); !got.LastSeen.Equal(first) {
		t.Errorf("stored LastSeen = %v, want %v: written twice within a minute", got.LastSeen, first)
	}
	// The unwritten newer use still counts for the idle timeout.
	if got := s.sessionLastSeen(&r); !got.Equal(first.Add(10 * time.Second)) {
		t.Errorf("newest use = %v, want %v", got, first.Add(10*time.Second))
	}
}

// An expired session found by a check is deleted by the writer, at the
// latest on Close.
func TestExpiredSessionDeletedOnClose(t *testing.T) {
	s, clk := newSessionStore(t)
	token, sess := mustCreateSession(t, s, "alice", "")
	clk.advance(SessionMax)
	checkSessionRefused(t, s, token, "", true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := open(s.Dir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, ok := rawSession(t, s2, sess.ID); ok {
		t.Error("expired session still stored after Close")
	}
}

func TestPruneSessionsDeletesEndedOnesHourly(t *testing.T) {
	s, clk := newSessionStore(t)
	_, old := mustCreateSession(t, s, "alice", "") // never used: idle at 8 h
	clk.advance(SessionIdle - 2*time.Minute)
	_, fresh := mustCreateSession(t, s, "alice", "pump-a")
	// Used half a minute after its stored time: the use stays in memory
	// only, and it alone keeps the session alive past 8 h.
	memToken, mem := mustCreateSession(t, s, "bob", "")
	clk.advance(30 * time.Second)
	checkSessionOK(t, s, memToken, "")
	flushSessions(t, s)
	if r, _ := rawSession(t, s, mem.ID); !r.LastSeen.Equal(mem.Created) {
		t.Fatalf("stored LastSeen = %v; the test wants it unwritten", r.LastSeen)
	}

	clk.advance(2 * time.Minute) // old: 8 h idle; fresh, mem: 1.5–2 min
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawSession(t, s, old.ID); ok {
		t.Error("idle session not pruned")
	}
	for _, id := range []string{fresh.ID, mem.ID} {
		if _, ok := rawSession(t, s, id); !ok {
			t.Errorf("live session %s pruned", id)
		}
	}

	// A session that ends after this pass waits for the next, an hour on.
	ended := sessionRecord{ID: "00000000000000ee", User: "alice", Created: sessionT0, LastSeen: sessionT0, SecretHash: dummySecretHash}
	putRawSession(t, s, ended)
	clk.advance(time.Hour - time.Nanosecond)
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawSession(t, s, ended.ID); !ok {
		t.Fatal("pruned again within the hour")
	}
	clk.advance(time.Nanosecond)
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawSession(t, s, ended.ID); ok {
		t.Error("ended session not pruned an hour after the last pass")
	}
}

// The idle timeout of a pass counts from the newest use, even one only in
// memory; a pass also drops the in-memory state of what it deletes.
func TestPruneSessionsKeepsSessionAliveByUnwrittenUse(t *testing.T) {
	s, clk := newSessionStore(t)
	if err := s.pruneSessions(); err != nil { // the first pass, at T0
		t.Fatal(err)
	}
	token, sess := mustCreateSession(t, s, "bob", "")
	clk.advance(30 * time.Second)
	checkSessionOK(t, s, token, "") // in memory only: within the minute
	flushSessions(t, s)

	clk.advance(SessionIdle - 10*time.Second) // 8 h 20 s after the stored time
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawSession(t, s, sess.ID); !ok {
		t.Fatal("session alive by its unwritten use was pruned")
	}
	checkSessionOK(t, s, token, "")

	clk.advance(SessionIdle + time.Hour)
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawSession(t, s, sess.ID); ok {
		t.Error("idle session not pruned")
	}
	if n := held(s.sessionUse); n != 0 {
		t.Errorf("%d in-memory entries left after the session was pruned, want 0", n)
	}
}

func TestPruneSessionsWalksMoreThanOneChunk(t *testing.T) {
	s, clk := newSessionStore(t)
	// Old records written directly: CreateSession's transaction per
	// session would make this slow.
	const old = sessionPruneChunk + 100
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		for i := range old {
			r := sessionRecord{
				ID:         fmt.Sprintf("%016x", i),
				User:       "alice",
				Created:    sessionT0.Add(-SessionMax),
				LastSeen:   sessionT0.Add(-time.Hour),
				SecretHash: dummySecretHash,
			}
			data, err := json.Marshal(&r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.ID), data); err != nil {
				return err
			}
		}
		// A session whose user is gone.
		data, _ := json.Marshal(&sessionRecord{ID: "ffffffffffffffff", User: "carol", Created: sessionT0, LastSeen: sessionT0})
		return b.Put([]byte("ffffffffffffffff"), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	live, sess := mustCreateSession(t, s, "alice", "")
	clk.advance(time.Minute)
	if err := s.pruneSessions(); err != nil {
		t.Fatal(err)
	}
	if n := rawSessionCount(t, s); n != 1 {
		t.Errorf("%d sessions after pruning, want the live one", n)
	}
	if _, ok := rawSession(t, s, sess.ID); !ok {
		t.Error("live session pruned")
	}
	checkSessionOK(t, s, live, "")
}

// The writer prunes on its first tick after Open, without anyone
// presenting the old sessions.
func TestWriterPrunesEndedSessions(t *testing.T) {
	dir := t.TempDir()
	s, err := open(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession("alice", ""); err != nil {
		t.Fatal(err)
	}
	// Backdate it past SessionMax.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		k, v := b.Cursor().First()
		var r sessionRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		r.Created = r.Created.Add(-2 * SessionMax)
		data, _ := json.Marshal(&r)
		return b.Put(k, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open(dir, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rawSessionCount(t, s) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not prune the ended session within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSessionsConcurrentUse(t *testing.T) {
	s, err := open(t.TempDir(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			device := fmt.Sprintf("pump-%d", g)
			for range 20 {
				token, _, err := s.CreateSession("alice", device)
				if err != nil {
					t.Error(err)
					return
				}
				for range 20 {
					_, _, err := s.CheckSession(token, device)
					if errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrExpired) {
						break // ended by DeleteUserSessions
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
				if err := s.DeleteSession(token); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := s.DeleteUserSessions("alice"); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
}

// FuzzCheckSession: whatever the cookie holds, CheckSession does not panic,
// accepts only the one real token on its one host, and never repeats a
// token-shaped input in its error.
func FuzzCheckSession(f *testing.F) {
	s, err := open(f.TempDir(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		f.Fatal(err)
	}
	token, _, err := s.CreateSession("alice", "pump-a")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(token, "pump-a")
	f.Add(token, "")
	f.Add(token[:len(token)-1]+"A", "pump-a")
	f.Add("rfl_"+token[4:], "pump-a")
	f.Add("", "")
	f.Add(SessionPrefix, "pump-a")
	f.Add(SessionPrefix+strings.Repeat("\xff", 32), "pump-a")
	f.Fuzz(func(t *testing.T, tok, device string) {
		sess, u, err := s.CheckSession(tok, device)
		if tok == token && device == "pump-a" {
			if err != nil || u.Name != "alice" {
				t.Fatalf("the real token refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("CheckSession(%q, %q) accepted: %+v", tok, device, sess)
		}
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("CheckSession(%q, %q): %v; want ErrBadCredentials", tok, device, err)
		}
		if hasKeyShape(SessionPrefix, tok) && strings.Contains(err.Error(), tok[len(SessionPrefix):]) {
			t.Fatalf("error %q repeats the token", err)
		}
	})
}
