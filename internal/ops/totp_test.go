package ops

import (
	"context"
	"errors"
	"testing"

	"github.com/reflector-dev/reflector/store"
)

func TestNormalizeCode(t *testing.T) {
	tests := map[string]string{
		"123456":   "123456",
		" 123456 ": "123456",
		"123 456":  "123456",
		"012345":   "012345",
		"12345":    "",
		"1234567":  "",
		"12345a":   "",
		"１２３４５６":   "", // full-width digits are not digits here
		"":         "",
	}
	for in, want := range tests {
		got, ok := NormalizeCode(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestMalformedCodesAreRefusedBeforeTheStore: a code that is no six digits
// is refused by every front alike, as invalid input naming the field, and
// costs the user no attempt.
func TestMalformedCodesAreRefusedBeforeTheStore(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := svc.AddUser(ctx, Local(), NewUser{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.BeginTOTP(ctx, Local(), "alice"); err != nil {
		t.Fatal(err)
	}
	err = svc.ConfirmTOTP(ctx, Local(), "alice", "12 34 5")
	var fe *store.FieldError
	if !errors.Is(err, ErrMalformedCode) || !errors.Is(err, store.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "code" {
		t.Errorf("ConfirmTOTP with 5 digits: %v; want ErrMalformedCode, store.ErrInvalid, field code", err)
	}
}
