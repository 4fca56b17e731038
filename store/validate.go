package store

import (
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Limits on names. Names reach URLs, headers, logs and the admin UI, so
// they are held to small ASCII alphabets; only a device's display name is
// free text.
const (
	maxUserNameLen    = 64
	maxGroupNameLen   = 64
	maxDeviceIDLen    = 63 // one DNS label (RFC 1035 §2.3.4)
	maxDeviceNameLen  = 128
	maxPasswordLength = 1024 // argon2id hashes any length; this only stops abuse
)

// checkUserName accepts 1–64 characters of [A-Za-z0-9._@-].
func checkUserName(name string) error {
	if !validName(name, maxUserNameLen, "._@-") {
		return fmt.Errorf("user name %w: want 1-%d characters of A-Z a-z 0-9 . _ @ -", ErrInvalid, maxUserNameLen)
	}
	return nil
}

// checkGroupName accepts 1–64 characters of [A-Za-z0-9._-].
func checkGroupName(name string) error {
	if !validName(name, maxGroupNameLen, "._-") {
		return fmt.Errorf("group name %q %w: want 1-%d characters of A-Z a-z 0-9 . _ -", truncate(name), ErrInvalid, maxGroupNameLen)
	}
	return nil
}

// validName reports whether name has 1 to limit bytes, each an ASCII
// letter, digit or one of extra.
func validName(name string, limit int, extra string) bool {
	if len(name) == 0 || len(name) > limit {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c < utf8.RuneSelf && containsByte(extra, c):
		default:
			return false
		}
	}
	return true
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// validDeviceID reports whether id is a lower-case DNS label:
// [a-z0-9-]{1,63} without a leading or trailing '-'.
func validDeviceID(id string) bool {
	if len(id) == 0 || len(id) > maxDeviceIDLen || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func checkDeviceID(id string) error {
	if !validDeviceID(id) {
		return fmt.Errorf("device id %w: want a DNS label of 1-%d characters of a-z 0-9 -, not starting or ending with -", ErrInvalid, maxDeviceIDLen)
	}
	return nil
}

// checkDeviceName accepts an empty name or up to 128 bytes of UTF-8 text
// without control characters.
func checkDeviceName(name string) error {
	if len(name) > maxDeviceNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("device name %w: want at most %d bytes of UTF-8", ErrInvalid, maxDeviceNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("device name %w: control character %U", ErrInvalid, r)
		}
	}
	return nil
}

func checkRole(r Role) error {
	switch r {
	case RoleAdmin, RoleUser:
		return nil
	}
	return fmt.Errorf("role %q %w: want %q or %q", truncate(string(r)), ErrInvalid, RoleAdmin, RoleUser)
}

func checkPassword(password string) error {
	if password == "" {
		return fmt.Errorf("password %w: empty", ErrInvalid)
	}
	if len(password) > maxPasswordLength {
		return fmt.Errorf("password %w: longer than %d bytes", ErrInvalid, maxPasswordLength)
	}
	return nil
}

// normalizeGroups validates groups and returns them sorted without
// duplicates, in a new slice.
func normalizeGroups(groups []string) ([]string, error) {
	for _, g := range groups {
		if err := checkGroupName(g); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(groups)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// normalizePorts validates ports (1–65535) and returns them sorted without
// duplicates, in a new slice.
func normalizePorts(ports []uint16) ([]uint16, error) {
	for _, p := range ports {
		if p == 0 {
			return nil, fmt.Errorf("port 0 %w: want 1-65535", ErrInvalid)
		}
	}
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// truncate shortens s for an error message: a rejected value may be
// arbitrarily long, and messages end up in logs.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
