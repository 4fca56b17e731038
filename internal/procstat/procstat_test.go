package procstat

import (
	"os"
	"testing"
	"time"
)

// This process's own figures: CPU time grows with work, and resident
// memory is there and no more than its peak.
func TestOwnProcess(t *testing.T) {
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time %v after 200 ms of work, %v before", after, before)
	}
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("memory %+v", m)
	}
	if _, err := CPU(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
