package store

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// reasons joins the Reason of each event, oldest first as returned.
func reasons(es []AuditEvent) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.Reason)
	}
	return b.String()
}

func TestAuditPagesNewestFirstWithBefore(t *testing.T) {
	s, clk := newClockedStore(t)
	for i := 1; i <= 25; i++ {
		kind := AuditLogin
		if i%5 == 0 {
			kind = AuditDeviceAdd
		}
		s.Audit(AuditEvent{Kind: kind, Reason: fmt.Sprint(i)})
		clk.Add(time.Second)
	}

	var pages []string
	f := AuditFilter{Limit: 10}
	for range 5 {
		page := auditEvents(t, s, f)
		pages = append(pages, reasons(page))
		if len(page) < f.Limit {
			break
		}
		f.Before = page[0].Seq
		// Events written between pages are newer than the cursor and do
		// not shift it.
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: "new"})
	}
	want := []string{
		"16 17 18 19 20 21 22 23 24 25",
		"6 7 8 9 10 11 12 13 14 15",
		"1 2 3 4 5",
	}
	if strings.Join(pages, " | ") != strings.Join(want, " | ") {
		t.Errorf("pages %q, want %q", pages, want)
	}

	// Before works with the other filters: the newest two device.add
	// events below the 20th.
	got := auditEvents(t, s, AuditFilter{Kind: "device.", Before: 20, Limit: 2})
	if reasons(got) != "10 15" {
		t.Errorf("device. before seq 20: %q, want \"10 15\"", reasons(got))
	}
	if got := auditEvents(t, s, AuditFilter{Before: 1}); len(got) != 0 {
		t.Errorf("Before 1: %q, want nothing", reasons(got))
	}
	if got := auditEvents(t, s, AuditFilter{Before: 1 << 40, Limit: 1}); reasons(got) != "new" {
		t.Errorf("Before past every seq: %q, want the newest event", reasons(got))
	}
}

// TestAuditBeforeSeeksPastNewerEvents shows that Before starts the scan at
// its key: an event at or after it that cannot even be decoded is never
// read, while a scan from the newest end fails on it.
func TestAuditBeforeSeeksPastNewerEvents(t *testing.T) {
	s, _ := newClockedStore(t)
	for i := 1; i <= 5; i++ {
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: fmt.Sprint(i)})
	}
	auditEvents(t, s, AuditFilter{}) // flush
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		for _, seq := range []uint64{4, 5} {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], seq)
			if err := b.Put(k[:], []byte("not json")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuditEvents(AuditFilter{}); err == nil {
		t.Fatal("a scan from the newest event decoded the broken ones")
	}
	got, err := s.AuditEvents(AuditFilter{Before: 4})
	if err != nil || reasons(got) != "1 2 3" {
		t.Errorf("Before 4 = %q, %v; want \"1 2 3\" without reading seqs 4 and 5", reasons(got), err)
	}
}

func TestAuditUntilKeepsOnlyEarlierEvents(t *testing.T) {
	s, clk := newClockedStore(t)
	start := clk.Now()
	for i := range 6 { // one a minute, reasons 0..5
		s.Audit(AuditEvent{Kind: AuditLogin, Reason: fmt.Sprint(i)})
		clk.Add(time.Minute)
	}
	tests := []struct {
		name string
		f    AuditFilter
		want string
	}{
		{"until is exclusive", AuditFilter{Until: start.Add(3 * time.Minute)}, "0 1 2"},
		{"until between", AuditFilter{Until: start.Add(150 * time.Second)}, "0 1 2"},
		{"until before all", AuditFilter{Until: start}, ""},
		{"until with limit keeps newest", AuditFilter{Until: start.Add(4 * time.Minute), Limit: 2}, "2 3"},
		{"window", AuditFilter{Since: start.Add(time.Minute), Until: start.Add(3 * time.Minute)}, "1 2"},
		{"until and before", AuditFilter{Until: start.Add(5 * time.Minute), Before: 3}, "0 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reasons(auditEvents(t, s, tt.f)); got != tt.want {
				t.Errorf("reasons %q, want %q", got, tt.want)
			}
		})
	}
}

// MaxScan bounds what a rare filter reads: the matches among the newest
// MaxScan events only.
func TestAuditMaxScanReadsOnlyTheNewestEvents(t *testing.T) {
	s := newTestStore(t)
	s.Audit(AuditEvent{Kind: AuditAgent, Device: "rare", OK: true}) // oldest
	for range 10 {
		s.Audit(AuditEvent{Kind: AuditAgent, Device: "busy", OK: true})
	}
	s.Audit(AuditEvent{Kind: AuditAgent, Device: "rare", OK: true}) // newest
	all, err := s.AuditEvents(AuditFilter{Device: "rare"})
	if err != nil || len(all) != 2 {
		t.Fatalf("without MaxScan: %d events, %v", len(all), err)
	}
	got, err := s.AuditEvents(AuditFilter{Device: "rare", MaxScan: 5})
	if err != nil || len(got) != 1 || got[0].Seq != all[1].Seq {
		t.Fatalf("MaxScan 5: %+v, %v; want only the newest", got, err)
	}
}
