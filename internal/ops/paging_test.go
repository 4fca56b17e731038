package ops_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

func TestDevicePagesOfTwoReturnEachDeviceOnceAndEndWithNoCursor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	root := f.admin(t)
	var got []string
	q := ops.DeviceQuery{Limit: 2}
	for pages := 1; ; pages++ {
		page, err := f.svc.Devices(ctx, root, q)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(page.Devices) > 2 {
			t.Errorf("page %d holds %d devices, want at most 2", pages, len(page.Devices))
		}
		for _, d := range page.Devices {
			got = append(got, d.ID)
		}
		if page.Next == "" {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		q.After = page.Next
	}
	want := []string{"gate-1", "pump-1", "pump-2", "valve-1", "valve-2"}
	if !slices.Equal(got, want) {
		t.Errorf("devices over all pages = %v, want %v", got, want)
	}
}

func TestDeviceFilters(t *testing.T) {
	online, offline := true, false
	tests := []struct {
		name string
		q    ops.DeviceQuery
		want []string
	}{
		{"Q matches the id", ops.DeviceQuery{Q: "valve"}, []string{"valve-1", "valve-2"}},
		{"Q matches the id whatever the case", ops.DeviceQuery{Q: "PUMP-2"}, []string{"pump-2"}},
		{"Q matches the name whatever the case", ops.DeviceQuery{Q: "north"}, []string{"pump-1"}},
		{"Q matches id or name", ops.DeviceQuery{Q: "MAIN"}, []string{"valve-1"}},
		{"Q matching nothing", ops.DeviceQuery{Q: "boiler"}, nil},
		{"Group", ops.DeviceQuery{Group: "plant-b"}, []string{"pump-2", "valve-2"}},
		{"Group and Q", ops.DeviceQuery{Group: "plant-a", Q: "valve"}, []string{"valve-1"}},
		{"Online", ops.DeviceQuery{Online: &online}, []string{"pump-1"}},
		{"offline", ops.DeviceQuery{Online: &offline}, []string{"gate-1", "pump-2", "valve-1", "valve-2"}},
		{"Online with pages of 1", ops.DeviceQuery{Online: &online, Limit: 1}, []string{"pump-1"}},
	}
	f := newFixture(t)
	root := f.admin(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pageIDs(t, f, root, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("Devices(%+v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestOnlineDeviceCarriesItsTunnelStatus(t *testing.T) {
	f := newFixture(t)
	d, err := f.svc.Device(context.Background(), f.admin(t), "pump-1")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Online || d.Tunnel.ID != "pump-1" || !slices.Equal(d.Tunnel.Ports, []uint16{22, 80}) {
		t.Errorf("pump-1 = online %v, tunnel %+v; want online with the agent's ports", d.Online, d.Tunnel)
	}
	if d, _ := f.svc.Device(context.Background(), f.admin(t), "pump-2"); d.Online {
		t.Error("pump-2 is online without a tunnel")
	}
}

func TestWithoutAHubEveryDeviceIsOffline(t *testing.T) {
	f := newFixture(t)
	svc, err := ops.New(ops.Config{Store: f.st})
	if err != nil {
		t.Fatal(err)
	}
	online := true
	page, err := svc.Devices(context.Background(), ops.Local(), ops.DeviceQuery{Online: &online})
	if err != nil || len(page.Devices) != 0 {
		t.Errorf("online devices without a hub = %+v, %v; want none", page.Devices, err)
	}
}

func TestDevicePageLimitOutOfRangeIsAFieldErrorOnLimit(t *testing.T) {
	f := newFixture(t)
	for _, limit := range []int{-1, ops.MaxPage + 1} {
		_, err := f.svc.Devices(context.Background(), f.admin(t), ops.DeviceQuery{Limit: limit})
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != "limit" || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Limit %d: err = %v, want a FieldError on limit wrapping ErrInvalid", limit, err)
		}
	}
	for _, limit := range []int{0, 1, ops.MaxPage} {
		if _, err := f.svc.Devices(context.Background(), f.admin(t), ops.DeviceQuery{Limit: limit}); err != nil {
			t.Errorf("Limit %d: %v", limit, err)
		}
	}
}
