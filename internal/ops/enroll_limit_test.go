package ops

import (
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

// Agents choose their own ids when they enrol, so a key made with a token
// limited to some devices would add devices beyond its pattern.
func TestTokenLimitedToDevicesCannotMakeEnrolmentKeys(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddGroup(store.Group{Name: "plant-a"}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	limited := Caller{User: store.User{Name: "root", Role: store.RoleAdmin}, TokenID: "0123456789abcdef", Devices: "pump-*"}
	if _, _, err := s.CreateEnrollKey(t.Context(), limited, store.EnrollKey{Group: "plant-a"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a token limited to pump-* made an enrolment key: %v", err)
	}
	limited.Devices = ""
	if _, _, err := s.CreateEnrollKey(t.Context(), limited, store.EnrollKey{Group: "plant-a"}); err != nil {
		t.Fatalf("an admin's unlimited token: %v", err)
	}
}
