package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestValidationErrorsNameTheField is the specification of FieldError:
// every input a store call rejects is named as the REST API spells it, and
// the error still wraps the sentinel callers map to a status.
func TestValidationErrorsNameTheField(t *testing.T) {
	s := newTestStore(t)
	now := setTestClock(s, totpT0)
	addGroups(t, s, "ops")
	if err := s.AddGroup(Group{Name: "full", MaxDevices: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "d0", Groups: []string{"full"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "d1", Groups: []string{"ops"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", "pw", RoleUser, nil); err != nil {
		t.Fatal(err)
	}
	key := beginTOTP(t, s, "alice")
	bad := func(s string) *string { return &s }
	past := now.Add(-time.Hour)

	cases := []struct {
		name  string
		call  func() error
		field string
		want  error
	}{
		{"user name", func() error { return s.AddUser("bad name", "pw", RoleUser, nil) }, "name", ErrInvalid},
		{"user role", func() error { return s.AddUser("bob", "pw", "root", nil) }, "role", ErrInvalid},
		{"user password", func() error { return s.AddUser("bob", "", RoleUser, nil) }, "password", ErrInvalid},
		{"user group name", func() error { return s.AddUser("bob", "pw", RoleUser, []string{"a b"}) }, "groups", ErrInvalid},
		{"user group missing", func() error { return s.AddUser("bob", "pw", RoleUser, []string{"nope"}) }, "groups", ErrNotFound},
		{"set password", func() error { return s.SetPassword("alice", "") }, "password", ErrInvalid},
		{"set role", func() error { return s.SetUserRole("alice", "root") }, "role", ErrInvalid},
		{"set groups invalid", func() error { return s.SetUserGroups("alice", []string{"a/b"}) }, "groups", ErrInvalid},
		{"set groups missing", func() error { return s.SetUserGroups("alice", []string{"nope"}) }, "groups", ErrNotFound},

		{"group name", func() error { return s.AddGroup(Group{Name: "a b"}) }, "name", ErrInvalid},
		{"group quota", func() error { return s.AddGroup(Group{Name: "g", MaxDevices: -1}) }, "maxDevices", ErrInvalid},
		{"set group quota", func() error { return s.SetGroupMaxDevices("ops", -1) }, "maxDevices", ErrInvalid},

		{"device id", func() error { _, err := s.AddDevice(Device{ID: "Bad_ID"}); return err }, "id", ErrInvalid},
		{"device name", func() error { _, err := s.AddDevice(Device{ID: "d", Name: "a\x00"}); return err }, "name", ErrInvalid},
		{"device group name", func() error { _, err := s.AddDevice(Device{ID: "d", Groups: []string{""}}); return err }, "groups", ErrInvalid},
		{"device group missing", func() error { _, err := s.AddDevice(Device{ID: "d", Groups: []string{"nope"}}); return err }, "groups", ErrNotFound},
		{"device group full", func() error { _, err := s.AddDevice(Device{ID: "d", Groups: []string{"full"}}); return err }, "groups", ErrQuota},
		{"device port", func() error { _, err := s.AddDevice(Device{ID: "d", Ports: []uint16{22, 0}}); return err }, "ports", ErrInvalid},
		{"adopted secret", func() error { return s.AddDeviceWithSecret(Device{ID: "d"}, "") }, "secret", ErrInvalid},
		{"update name", func() error { _, err := s.UpdateDevice("d1", DeviceUpdate{Name: bad("\n")}); return err }, "name", ErrInvalid},
		{"update groups invalid", func() error {
			_, err := s.UpdateDevice("d1", DeviceUpdate{Groups: &[]string{"a b"}})
			return err
		}, "groups", ErrInvalid},
		{"update groups missing", func() error {
			_, err := s.UpdateDevice("d1", DeviceUpdate{Groups: &[]string{"nope"}})
			return err
		}, "groups", ErrNotFound},
		{"update groups full", func() error {
			_, err := s.UpdateDevice("d1", DeviceUpdate{Groups: &[]string{"full"}})
			return err
		}, "groups", ErrQuota},
		{"update ports", func() error { _, err := s.UpdateDevice("d1", DeviceUpdate{Ports: &[]uint16{0}}); return err }, "ports", ErrInvalid},

		{"import secret", func() error { return s.CheckDeviceImport([]DeviceImport{{Device: Device{ID: "d"}}}) }, "secret", ErrInvalid},
		{"import id", func() error { return s.CheckDeviceImport([]DeviceImport{{Device: Device{ID: "-d"}, Secret: "s"}}) }, "id", ErrInvalid},
		{"import group missing", func() error {
			return s.CheckDeviceImport([]DeviceImport{{Device: Device{ID: "d", Groups: []string{"nope"}}, Secret: "s"}})
		}, "groups", ErrNotFound},
		{"import group full", func() error {
			return s.CheckDeviceImport([]DeviceImport{{Device: Device{ID: "d", Groups: []string{"full"}}, Secret: "s"}})
		}, "groups", ErrQuota},

		{"token user", func() error { _, _, err := s.CreateToken(Token{User: "a b", Name: "t"}); return err }, "user", ErrNotFound},
		{"token user missing", func() error { _, _, err := s.CreateToken(Token{User: "bob", Name: "t"}); return err }, "user", ErrNotFound},
		{"token name", func() error { _, _, err := s.CreateToken(Token{User: "alice", Name: ""}); return err }, "name", ErrInvalid},
		{"token devices", func() error {
			_, _, err := s.CreateToken(Token{User: "alice", Name: "t", Devices: "[a"})
			return err
		}, "devices", ErrInvalid},
		{"token expires", func() error {
			_, _, err := s.CreateToken(Token{User: "alice", Name: "t", Expires: past})
			return err
		}, "expires", ErrInvalid},

		{"enrol group name", func() error { _, _, err := s.CreateEnrollKey(EnrollKey{Group: "a b"}); return err }, "group", ErrInvalid},
		{"enrol group missing", func() error { _, _, err := s.CreateEnrollKey(EnrollKey{Group: "nope"}); return err }, "group", ErrNotFound},
		{"enrol max", func() error { _, _, err := s.CreateEnrollKey(EnrollKey{Group: "ops", Max: -1}); return err }, "max", ErrInvalid},
		{"enrol expires", func() error {
			_, _, err := s.CreateEnrollKey(EnrollKey{Group: "ops", Expires: past})
			return err
		}, "expires", ErrInvalid},

		{"session device", func() error { _, _, err := s.CreateSession("alice", "Not_A_Label"); return err }, "device", ErrInvalid},

		{"TOTP code malformed", func() error { return s.ConfirmTOTP("alice", "12a456") }, "code", ErrBadCredentials},
		{"TOTP code wrong", func() error {
			return s.ConfirmTOTP("alice", wrongCode(totpCodeAt(t, key.Secret(), *now)))
		}, "code", ErrBadCredentials},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if fe.Field != c.field {
				t.Errorf("Field = %q, want %q (err %v)", fe.Field, c.field, err)
			}
			if !errors.Is(err, c.want) || !errors.Is(fe, c.want) {
				t.Errorf("err = %v, want it and its FieldError to wrap %v", err, c.want)
			}
		})
	}
}

// TestFieldErrorKeepsMessages checks that naming the field changed no text:
// the CLI's tests compare messages.
func TestFieldErrorKeepsMessages(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "ops")
	cases := []struct {
		err  error
		want string
	}{
		{s.AddUser("bob", "pw", "root", nil), `add user "bob": role "root" invalid: want "admin" or "user"`},
		{s.AddGroup(Group{Name: "g", MaxDevices: -2}), `add group "g": device quota -2 invalid: want 0 (none) or more`},
		{s.AddUser("bob", "pw", RoleUser, []string{"nope"}), `add user "bob": group "nope": not found`},
		{func() error { _, _, err := s.CreateEnrollKey(EnrollKey{Group: "ops", Max: -1}); return err }(),
			`create enrolment key for group "ops": maximum uses -1 invalid: want 0 (no limit) or more`},
		{func() error { _, _, err := s.CreateToken(Token{User: "x y", Name: "t"}); return err }(),
			`create token for "x y": user not found`},
	}
	for _, c := range cases {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("error %q, want %q", c.err, c.want)
		}
	}
	fe := &FieldError{Field: "name", Err: ErrInvalid}
	if fe.Error() != "invalid" || strings.Contains(fe.Error(), "name") {
		t.Errorf("FieldError.Error() = %q, want the wrapped text alone", fe.Error())
	}
}
