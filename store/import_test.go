package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func importOf(id, secret string, groups ...string) DeviceImport {
	return DeviceImport{Device: Device{ID: id, Groups: groups}, Secret: secret}
}

// refusedIndexes returns the indexes of the *ImportError values in err.
func refusedIndexes(err error) []int {
	var out []int
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *ImportError:
			out = append(out, e.Index)
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

func TestImportDevicesStoresAllWithSecretsThatCheck(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	ds := []DeviceImport{
		importOf("pump-1", "hunter2", "plant-a"),
		importOf("pump-2", "pass with spaces, and: colons"),
		{Device: Device{ID: "pump-3", Name: "Pump 3"}, Secret: strings.Repeat("x", 1024)},
	}
	if err := s.ImportDevices(ds); err != nil {
		t.Fatalf("ImportDevices: %v", err)
	}
	for _, d := range ds {
		got, err := s.CheckDeviceSecret(context.Background(), d.Device.ID, d.Secret)
		if err != nil {
			t.Errorf("CheckDeviceSecret(%s): %v", d.Device.ID, err)
			continue
		}
		if got.Name != d.Device.Name || len(got.Groups) != len(d.Device.Groups) || got.Created.IsZero() {
			t.Errorf("stored %+v, want %+v", got, d.Device)
		}
		if _, err := s.CheckDeviceSecret(context.Background(), d.Device.ID, d.Secret+"x"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("wrong secret for %s: %v", d.Device.ID, err)
		}
	}
}

func TestImportDevicesWithOneBadDeviceImportsNone(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "plant-a")
	if _, err := s.AddDevice(Device{ID: "old"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		bad  DeviceImport
		want error
	}{
		{"invalid id", importOf("Bad_ID", "pw"), ErrInvalid},
		{"empty secret", importOf("pump-9", ""), ErrInvalid},
		{"long secret", importOf("pump-9", strings.Repeat("x", 1025)), ErrInvalid},
		{"control character in secret", importOf("pump-9", "pw\n"), ErrInvalid},
		{"unknown group", importOf("pump-9", "pw", "nope"), ErrNotFound},
		{"existing id", importOf("old", "pw"), ErrExists},
		{"id twice", importOf("pump-1", "other"), ErrExists},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ds := []DeviceImport{importOf("pump-1", "a", "plant-a"), importOf("pump-2", "b"), tc.bad, importOf("pump-3", "c")}
			err := s.ImportDevices(ds)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ImportDevices = %v, want %v", err, tc.want)
			}
			if got := refusedIndexes(err); len(got) != 1 || got[0] != 2 {
				t.Errorf("refused indexes %v, want [2]", got)
			}
			if strings.Contains(err.Error(), "pw") && tc.desc != "invalid id" {
				t.Errorf("error quotes the secret: %v", err)
			}
			devices, err := s.Devices()
			if err != nil {
				t.Fatal(err)
			}
			if len(devices) != 1 || devices[0].ID != "old" {
				t.Errorf("devices after refused import: %+v", devices)
			}
			// The dry run agrees.
			if err := s.CheckDeviceImport(ds); !errors.Is(err, tc.want) {
				t.Errorf("CheckDeviceImport = %v", err)
			}
		})
	}
}

func TestImportDevicesReportsEveryRefusedDevice(t *testing.T) {
	s := newTestStore(t)
	err := s.ImportDevices([]DeviceImport{
		importOf("ok-1", "a"), importOf("-bad", "b"), importOf("ok-2", "c"), importOf("ok-1", "d"), importOf("x", "e", "nope"),
	})
	if got := fmt.Sprint(refusedIndexes(err)); got != "[1 3 4]" {
		t.Errorf("refused %s, want [1 3 4]: %v", got, err)
	}
}

func TestImportDevicesHoldsGroupQuota(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddGroup(Group{Name: "small", MaxDevices: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDevice(Device{ID: "old", Groups: []string{"small"}}); err != nil {
		t.Fatal(err)
	}
	ds := []DeviceImport{
		importOf("d1", "a", "small"), importOf("d2", "b"), importOf("d3", "c", "small"),
		importOf("d4", "d", "small"), importOf("d5", "e", "small"),
	}
	err := s.ImportDevices(ds)
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("ImportDevices = %v, want ErrQuota", err)
	}
	if got := fmt.Sprint(refusedIndexes(err)); got != "[3 4]" {
		t.Errorf("refused %s, want [3 4] (the old device and two imported fill the group)", got)
	}
	if devices, _ := s.Devices(); len(devices) != 1 {
		t.Errorf("%d devices after a refused import, want 1", len(devices))
	}
	// Without the last two it fits exactly.
	if err := s.ImportDevices(ds[:3]); err != nil {
		t.Fatalf("ImportDevices within quota: %v", err)
	}
	if g, err := s.Group("small"); err != nil || g.MaxDevices != 3 {
		t.Fatalf("group: %+v %v", g, err)
	}
	if _, err := s.AddDevice(Device{ID: "one-more", Groups: []string{"small"}}); !errors.Is(err, ErrQuota) {
		t.Errorf("AddDevice into the full group: %v, want ErrQuota", err)
	}
}

func TestAddDeviceWithSecretAdoptsTheSecret(t *testing.T) {
	s := newTestStore(t)
	if err := s.AddDeviceWithSecret(Device{ID: "pump-17"}, "the-old-password"); err != nil {
		t.Fatalf("AddDeviceWithSecret: %v", err)
	}
	if _, err := s.CheckDeviceSecret(context.Background(), "pump-17", "the-old-password"); err != nil {
		t.Errorf("CheckDeviceSecret: %v", err)
	}
	if err := s.AddDeviceWithSecret(Device{ID: "pump-17"}, "x"); !errors.Is(err, ErrExists) {
		t.Errorf("same id again: %v, want ErrExists", err)
	}
	for _, bad := range []string{"", strings.Repeat("y", 1025), "tab\there", "del\x7f"} {
		if err := s.AddDeviceWithSecret(Device{ID: "pump-18"}, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("secret %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.Device("pump-18"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused device stored: %v", err)
	}
}
