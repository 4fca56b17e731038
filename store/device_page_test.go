package store

import (
	"fmt"
	"slices"
	"testing"
)

// addDeviceIDs adds devices with the given ids (and groups) or fails t.
func addDeviceIDs(t *testing.T, s *Store, groups []string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := s.AddDevice(Device{ID: id, Groups: groups}); err != nil {
			t.Fatalf("AddDevice %q: %v", id, err)
		}
	}
}

func TestDevicePageVisitsEveryDeviceOnceWhileDevicesAreAdded(t *testing.T) {
	s := newTestStore(t)
	var start []string
	for i := 0; i < 80; i += 4 {
		start = append(start, fmt.Sprintf("d%03d", i))
	}
	addDeviceIDs(t, s, nil, start...)

	var seen, addedBefore, addedAfter []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 40 {
			t.Fatal("paging does not end")
		}
		page, next, err := s.DevicePage(after, 7, nil)
		if err != nil {
			t.Fatalf("DevicePage(%q): %v", after, err)
		}
		if len(page) == 0 {
			t.Fatalf("DevicePage(%q) returned an empty page", after)
		}
		for _, d := range page {
			seen = append(seen, d.ID)
		}
		if next == "" {
			break
		}
		if next != page[len(page)-1].ID {
			t.Fatalf("next = %q, want the last id of the page %q", next, page[len(page)-1].ID)
		}
		after = next
		// Between pages the fleet grows on both sides of the cursor, right
		// next to it (the page number keeps the ids apart).
		var n int
		if _, err := fmt.Sscanf(next[:4], "d%03d", &n); err != nil {
			t.Fatalf("next %q: %v", next, err)
		}
		before := fmt.Sprintf("d%03d-b%d", n-1, pages)
		behind := fmt.Sprintf("%s-a%d", next, pages)
		addDeviceIDs(t, s, nil, before, behind)
		addedBefore = append(addedBefore, before)
		addedAfter = append(addedAfter, behind)
	}

	if len(addedAfter) < 2 {
		t.Fatalf("only %d pages; the test wants devices added between several", len(addedAfter)+1)
	}
	if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
		t.Fatalf("ids across pages not strictly increasing: %v", seen)
	}
	for _, id := range append(start, addedAfter...) {
		if !slices.Contains(seen, id) {
			t.Errorf("device %q (there before its page) never returned", id)
		}
	}
	for _, id := range addedBefore {
		if slices.Contains(seen, id) {
			t.Errorf("device %q added before the cursor returned", id)
		}
	}
	if len(seen) != len(start)+len(addedAfter) {
		t.Errorf("%d devices returned, want %d", len(seen), len(start)+len(addedAfter))
	}
}

func TestDevicePageKeepsOnlyAcceptedAndEndsWithoutEmptyPage(t *testing.T) {
	s := newTestStore(t)
	addGroups(t, s, "a", "b")
	addDeviceIDs(t, s, []string{"a"}, "a1", "a2", "a3", "a4")
	addDeviceIDs(t, s, []string{"b"}, "b1", "b2", "b3", "z1")
	inA := func(d Device) bool { return slices.Contains(d.Groups, "a") }

	page, next, err := s.DevicePage("", 2, inA)
	if err != nil || len(page) != 2 || page[0].ID != "a1" || page[1].ID != "a2" || next != "a2" {
		t.Fatalf("first page = %v, %q, %v; want a1 a2, next a2", ids(page), next, err)
	}
	// The last two kept devices fill the page exactly: next is "" now, not
	// after one more empty page.
	page, next, err = s.DevicePage(next, 2, inA)
	if err != nil || len(page) != 2 || page[0].ID != "a3" || page[1].ID != "a4" || next != "" {
		t.Fatalf("second page = %v, %q, %v; want a3 a4, next \"\"", ids(page), next, err)
	}
}

func TestDevicePageReadsNoFurtherThanOnePastThePage(t *testing.T) {
	s := newTestStore(t)
	for i := range 30 {
		addDeviceIDs(t, s, nil, fmt.Sprintf("d%02d", i))
	}
	var read []string
	keep := func(d Device) bool { read = append(read, d.ID); return true }
	page, next, err := s.DevicePage("d09", 3, keep)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page); !slices.Equal(got, []string{"d10", "d11", "d12"}) || next != "d12" {
		t.Fatalf("page = %v next %q, want d10 d11 d12 next d12", got, next)
	}
	// Seek to the cursor, the page, and one look-ahead: nothing before d10
	// and nothing past d13 is decoded.
	if !slices.Equal(read, []string{"d10", "d11", "d12", "d13"}) {
		t.Errorf("keep saw %v, want d10..d13 only", read)
	}
}

func TestDevicePageEdges(t *testing.T) {
	s := newTestStore(t)
	if page, next, err := s.DevicePage("", 10, nil); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("empty store: %v, %q, %v; want nothing", page, next, err)
	}
	addDeviceIDs(t, s, nil, "a", "b", "c", "d")

	cases := []struct {
		after string
		limit int
		want  []string
		next  string
	}{
		{"", 0, []string{"a", "b", "c", "d"}, ""}, // limit <= 0: all
		{"b", -1, []string{"c", "d"}, ""},         // all after the cursor
		{"bb", 1, []string{"c"}, "c"},             // a cursor that is no device (removed since)
		{"d", 5, nil, ""},                         // after the last
		{"zzz", 5, nil, ""},                       // past every id
		{"", 4, []string{"a", "b", "c", "d"}, ""}, // exactly full
		{"", 3, []string{"a", "b", "c"}, "c"},     // one more follows
	}
	for _, c := range cases {
		page, next, err := s.DevicePage(c.after, c.limit, nil)
		if err != nil || !slices.Equal(ids(page), c.want) || next != c.next {
			t.Errorf("DevicePage(%q, %d) = %v, %q, %v; want %v, %q", c.after, c.limit, ids(page), next, err, c.want, c.next)
		}
	}
}

func TestDevicePageShowsUnwrittenLastSeen(t *testing.T) {
	s := newTestStore(t)
	addDeviceIDs(t, s, nil, "a")
	seen := totpT0
	s.TouchDevice("a", seen)
	page, _, err := s.DevicePage("", 1, nil)
	if err != nil || len(page) != 1 || !page[0].LastSeen.Equal(seen) {
		t.Fatalf("page = %+v, %v; want a with LastSeen %v before the flush", page, err, seen)
	}
}

func ids(ds []Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
