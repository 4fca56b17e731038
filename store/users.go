package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Role is what a user may do: administer the reflector, or reach the
// devices of their groups.
type Role string

const (
	RoleAdmin Role = "admin"
	RoleUser  Role = "user"
)

// User is a person or program that reaches devices. The password hash stays
// inside the store.
type User struct {
	Name    string
	Role    Role
	Groups  []string // sorted, without duplicates
	TOTP    bool     // a second factor is enabled: the password alone is not a proxy credential
	Created time.Time
}

// userRecord is the stored form of a user, a JSON value in the users bucket
// under the user's name. Names are kept and looked up case-sensitively.
type userRecord struct {
	Name         string    `json:"name"`
	Role         Role      `json:"role"`
	Groups       []string  `json:"groups,omitempty"`
	Created      time.Time `json:"created"`
	PasswordHash string    `json:"password_hash"`

	// TOTP state (totp.go): the enabled secret and the one waiting for its
	// first code, both base32 as in the otpauth URL, and the newest time
	// step whose code was accepted. The step outlives the secrets: time
	// only moves forward, so keeping it costs nothing.
	TOTPSecret   string `json:"totp_secret,omitempty"`
	TOTPPending  string `json:"totp_pending,omitempty"`
	TOTPLastStep int64  `json:"totp_last_step,omitempty"`
}

func (r *userRecord) user() User {
	return User{Name: r.Name, Role: r.Role, Groups: r.Groups, TOTP: r.TOTPSecret != "", Created: r.Created}
}

// AddUser creates a user. It fails with ErrExists if the name, or a name
// differing from it only in letter case, is taken: "Alice" and "alice" would
// be different users that look the same in logs and the admin UI.
func (s *Store) AddUser(name, password string, role Role, groups []string) error {
	if err := checkUserName(name); err != nil {
		return fmt.Errorf("add user %q: %w", truncate(name), fieldErr("name", err))
	}
	if err := checkRole(role); err != nil {
		return fmt.Errorf("add user %q: %w", name, fieldErr("role", err))
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("add user %q: %w", name, fieldErr("password", err))
	}
	groups, err := normalizeGroups(groups)
	if err != nil {
		return fmt.Errorf("add user %q: %w", name, fieldErr("groups", err))
	}
	// Hash before the write transaction: bbolt has one writer at a time and
	// argon2id takes tens of milliseconds.
	hash, err := s.argon.hashPassword(password)
	if err != nil {
		return fmt.Errorf("add user %q: %w", name, err)
	}
	rec := userRecord{
		Name:         name,
		Role:         role,
		Groups:       groups,
		Created:      time.Now().UTC(),
		PasswordHash: hash,
	}
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("add user %q: %w", name, err)
	}

	defer s.usersChanged()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) != nil {
			return ErrExists
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if strings.EqualFold(string(k), name) {
				return fmt.Errorf("%w as %q", ErrExists, k)
			}
		}
		if err := checkGroupsExist(tx, "groups", groups); err != nil {
			return err
		}
		return b.Put([]byte(name), data)
	})
	if err != nil {
		return fmt.Errorf("add user %q: %w", name, err)
	}
	return nil
}

// User returns the named user.
func (s *Store) User(name string) (User, error) {
	if checkUserName(name) != nil {
		// No such name can have been stored.
		return User{}, fmt.Errorf("user %q: %w", truncate(name), ErrNotFound)
	}
	var rec userRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getUser(tx, name)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return rec.user(), nil
}

// Users returns all users, sorted by name.
func (s *Store) Users() ([]User, error) {
	var users []User
	err := s.db.View(func(tx *bolt.Tx) error {
		// bbolt iterates in byte order of the keys, which is the order of
		// Go string comparison, so the result is already sorted.
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var rec userRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode user %q: %w", k, err)
			}
			users = append(users, rec.user())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// RemoveUser deletes the named user, their API tokens and their web
// sessions.
func (s *Store) RemoveUser(name string) error {
	if checkUserName(name) != nil {
		return fmt.Errorf("remove user %q: %w", truncate(name), ErrNotFound)
	}
	defer s.usersChanged()
	var tokens, sessions []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		var err error
		if tokens, err = deleteUserTokens(tx, name); err != nil {
			return err
		}
		if sessions, err = deleteUserSessions(tx, name); err != nil {
			return err
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("remove user %q: %w", name, err)
	}
	s.tokenUse.forget(tokens...)
	s.sessionUse.forget(sessions...)
	return nil
}

// SetPassword replaces the named user's password and ends their web
// sessions, the caller's own included: whoever knew the old password may
// have logged in with it.
func (s *Store) SetPassword(name, password string) error {
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("set password for %q: %w", truncate(name), fieldErr("password", err))
	}
	hash, err := s.argon.hashPassword(password)
	if err != nil {
		return fmt.Errorf("set password for %q: %w", truncate(name), err)
	}
	var sessions []string
	err = s.updateUserTx(name, func(tx *bolt.Tx, rec *userRecord) error {
		rec.PasswordHash = hash
		var err error
		sessions, err = deleteUserSessions(tx, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("set password for %q: %w", truncate(name), err)
	}
	s.sessionUse.forget(sessions...)
	return nil
}

// CheckPassword returns the named user if password is theirs, and an error
// wrapping ErrBadCredentials if the user does not exist or the password is
// wrong. An unknown user costs the same argon2id work as a wrong password.
// Successful checks are cached for a minute (see credCache), so repeated
// proxy requests with the same credentials are cheap. The argon2id check
// waits for a CPU only while ctx lives; when ctx ends first, the error
// wraps ctx's and the password was not checked.
func (s *Store) CheckPassword(ctx context.Context, name, password string) (User, error) {
	// The rules for names and passwords are public, so answering these at
	// once reveals nothing about which users exist.
	if checkUserName(name) != nil || checkPassword(password) != nil {
		return User{}, fmt.Errorf("check password: %w", ErrBadCredentials)
	}
	key := newCredKey(name, password)
	if u, ok := s.creds.get(key); ok {
		return u, nil
	}
	gen := s.creds.generation()

	var rec userRecord
	found := true
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = getUser(tx, name)
		if errors.Is(err, ErrNotFound) {
			found = false
			return nil
		}
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("check password for %q: %w", name, err)
	}
	hash := rec.PasswordHash
	if !found {
		hash = dummyPasswordHash
	}
	ok, err := s.argon.verifyPassword(ctx, hash, password)
	if err != nil {
		return User{}, fmt.Errorf("check password for %q: %w", name, err)
	}
	if !found || !ok {
		return User{}, fmt.Errorf("check password for %q: %w", name, ErrBadCredentials)
	}
	u := rec.user()
	s.creds.put(gen, key, u)
	return u, nil
}

// updateUser applies fn to the named user's record in one write transaction
// and drops the password and token caches. Every change to a user goes through here
// or updateUserTx.
func (s *Store) updateUser(name string, fn func(*userRecord) error) error {
	return s.updateUserTx(name, func(_ *bolt.Tx, rec *userRecord) error { return fn(rec) })
}

// updateUserTx is updateUser for changes that read other records in the
// same transaction. If fn fails nothing is written, and the credential
// caches are kept: a wrong TOTP code must not cost every user an argon2id.
func (s *Store) updateUserTx(name string, fn func(*bolt.Tx, *userRecord) error) error {
	if checkUserName(name) != nil {
		return ErrNotFound
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getUser(tx, name)
		if err != nil {
			return err
		}
		if err := fn(tx, &rec); err != nil {
			return err
		}
		data, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketUsers).Put([]byte(name), data)
	})
	if err == nil {
		s.usersChanged()
	}
	return err
}

// getUser reads and decodes a user record inside tx. It returns ErrNotFound
// itself (unwrapped) when there is no such user.
func getUser(tx *bolt.Tx, name string) (userRecord, error) {
	return getRecord[userRecord](tx, bucketUsers, name, "user")
}

// SetUserRole changes the named user's role.
func (s *Store) SetUserRole(name string, role Role) error {
	if err := checkRole(role); err != nil {
		return fmt.Errorf("set role of %q: %w", truncate(name), fieldErr("role", err))
	}
	err := s.updateUser(name, func(rec *userRecord) error {
		rec.Role = role
		return nil
	})
	if err != nil {
		return fmt.Errorf("set role of %q: %w", truncate(name), err)
	}
	return nil
}

// SetUserGroups replaces the named user's groups; every group must exist
// (ErrNotFound otherwise).
func (s *Store) SetUserGroups(name string, groups []string) error {
	groups, err := normalizeGroups(groups)
	if err != nil {
		return fmt.Errorf("set groups of %q: %w", truncate(name), fieldErr("groups", err))
	}
	err = s.updateUserTx(name, func(tx *bolt.Tx, rec *userRecord) error {
		if err := checkGroupsExist(tx, "groups", groups); err != nil {
			return err
		}
		rec.Groups = groups
		return nil
	})
	if err != nil {
		return fmt.Errorf("set groups of %q: %w", truncate(name), err)
	}
	return nil
}
