package ops

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/reflector-dev/reflector/store"
)

// generatedPasswordBytes is the entropy of a generated password: 128 bits,
// 22 characters of base64url.
const generatedPasswordBytes = 16

// GeneratePassword returns 128 random bits as base64url without padding.
func GeneratePassword() (string, error) {
	b := make([]byte, generatedPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Users lists the users (admins).
func (s *Service) Users(ctx context.Context, c Caller) ([]store.User, error) {
	if err := c.requireAdmin("list users"); err != nil {
		return nil, err
	}
	return s.cfg.Store.Users()
}

// User returns one user: any to an admin, themselves to a user.
func (s *Service) User(ctx context.Context, c Caller, name string) (store.User, error) {
	if !c.Admin() && !c.self(name) {
		// Other users' names are not a user's business: not found, as a
		// name that does not exist.
		return store.User{}, fmt.Errorf("user %q: %w", name, store.ErrNotFound)
	}
	return s.cfg.Store.User(name)
}

// NewUser is a user to add.
type NewUser struct {
	Name string
	// Password; "" generates one, which AddUser returns.
	Password string
	Role     store.Role // "" is store.RoleUser
	Groups   []string
}

// AddUser adds a user (admins). It returns the generated password, or ""
// when n carried one.
func (s *Service) AddUser(ctx context.Context, c Caller, n NewUser) (u store.User, generated string, err error) {
	if err := c.requireAdmin("add user " + n.Name); err != nil {
		return store.User{}, "", err
	}
	if n.Role == "" {
		n.Role = store.RoleUser
	}
	password := n.Password
	if password == "" {
		if password, err = GeneratePassword(); err != nil {
			return store.User{}, "", fmt.Errorf("add user %s: %w", n.Name, err)
		}
		generated = password
	}
	if err := s.cfg.Store.AddUser(n.Name, password, n.Role, n.Groups); err != nil {
		return store.User{}, "", err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditUserAdd, User: n.Name, Reason: "role " + DescribeRole(n.Role, n.Groups)})
	u, err = s.cfg.Store.User(n.Name)
	return u, generated, err
}

// DescribeRole is "admin" or "user, groups a,b", for messages and the
// audit log ("role " and this is the reason of user.add).
func DescribeRole(role store.Role, groups []string) string {
	desc := string(role)
	if len(groups) > 0 {
		desc += ", groups " + strings.Join(groups, ",")
	}
	return desc
}

// UserUpdate is a change to a user; nil fields stay as they are.
type UserUpdate struct {
	Role   *store.Role
	Groups *[]string
}

// UpdateUser changes a user's role or groups (admins) and returns the
// result with a description of what changed, as the audit log has it.
func (s *Service) UpdateUser(ctx context.Context, c Caller, name string, u UserUpdate) (store.User, string, error) {
	if err := c.requireAdmin("change user " + name); err != nil {
		return store.User{}, "", err
	}
	if u.Role == nil && u.Groups == nil {
		return store.User{}, "", &store.FieldError{Field: "role", Err: fmt.Errorf("change user %s: %w: nothing to change", name, store.ErrInvalid)}
	}
	// Groups first: they can fail (a group that does not exist) where the
	// role cannot, so a failure leaves the user as it was.
	var changes []string
	if u.Groups != nil {
		groups := slices.Clone(*u.Groups)
		slices.Sort(groups) // as the store keeps them, for the message
		groups = slices.Compact(groups)
		if err := s.cfg.Store.SetUserGroups(name, groups); err != nil {
			return store.User{}, "", err
		}
		changes = append(changes, describeGroups(groups))
	}
	if u.Role != nil {
		if err := s.cfg.Store.SetUserRole(name, *u.Role); err != nil {
			return store.User{}, "", err
		}
		changes = append(changes, "role "+string(*u.Role))
	}
	desc := strings.Join(changes, ", ")
	s.audit(c, store.AuditEvent{Kind: store.AuditUserSet, User: name, Reason: desc})
	s.accessChanged()
	user, err := s.cfg.Store.User(name)
	return user, desc, err
}

// SetPassword gives a user a new password (admins); "" generates one, which
// it returns.
func (s *Service) SetPassword(ctx context.Context, c Caller, name, password string) (generated string, err error) {
	if err := c.requireAdmin("set the password of " + name); err != nil {
		return "", err
	}
	if password == "" {
		if password, err = GeneratePassword(); err != nil {
			return "", fmt.Errorf("set password for %s: %w", name, err)
		}
		generated = password
	}
	if err := s.cfg.Store.SetPassword(name, password); err != nil {
		return "", err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditUserSet, User: name, Reason: "password changed"})
	// The old password may be what open streams authenticated with.
	s.accessChanged()
	return generated, nil
}

// ErrWrongPassword: the current password given to ChangeOwnPassword is not
// the user's.
var ErrWrongPassword = errors.New("wrong current password")

// ChangeOwnPassword changes the caller's own password after checking the
// current one.
func (s *Service) ChangeOwnPassword(ctx context.Context, c Caller, current, password string) error {
	if c.Local {
		return fmt.Errorf("change password: %w: the control socket is no user", ErrForbidden)
	}
	name := c.User.Name
	if _, err := s.cfg.Store.CheckPassword(ctx, name, current); err != nil {
		if errors.Is(err, store.ErrBadCredentials) {
			return &store.FieldError{Field: "currentPassword", Err: fmt.Errorf("change password of %s: %w", name, ErrWrongPassword)}
		}
		return err
	}
	if err := s.cfg.Store.SetPassword(name, password); err != nil {
		return err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditUserSet, User: name, Reason: "password changed by the user"})
	s.accessChanged()
	return nil
}

// RemoveUser removes a user (admins), closing their streams.
func (s *Service) RemoveUser(ctx context.Context, c Caller, name string) error {
	if err := c.requireAdmin("remove user " + name); err != nil {
		return err
	}
	if c.self(name) {
		// An admin removing themselves through the API would lock the
		// door behind them; the control socket may.
		return fmt.Errorf("remove user %s: %w: not yourself", name, ErrForbidden)
	}
	if err := s.cfg.Store.RemoveUser(name); err != nil {
		return err
	}
	s.audit(c, store.AuditEvent{Kind: store.AuditUserRm, User: name})
	s.accessChanged()
	return nil
}

// describeGroups is "groups a,b" or "no groups", for messages and the
// audit log.
func describeGroups(groups []string) string {
	if len(groups) == 0 {
		return "no groups"
	}
	return "groups " + strings.Join(groups, ",")
}
