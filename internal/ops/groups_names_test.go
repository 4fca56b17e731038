package ops

import (
	"slices"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestGroupNamesAreAUsersOwnOrAllForAnAdmin(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, g := range []string{"plant-a", "plant-b"} {
		if err := st.AddGroup(store.Group{Name: g}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := New(Config{Store: st})
	user := Caller{User: store.User{Name: "ann", Role: store.RoleUser, Groups: []string{"plant-b"}}}
	if got, err := s.GroupNames(t.Context(), user); err != nil || !slices.Equal(got, []string{"plant-b"}) {
		t.Errorf("a user's group names: %v %v", got, err)
	}
	if got, err := s.GroupNames(t.Context(), Local()); err != nil || !slices.Equal(got, []string{"plant-a", "plant-b"}) {
		t.Errorf("an admin's group names: %v %v", got, err)
	}
}
