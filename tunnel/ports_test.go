package tunnel

import (
	"slices"
	"testing"
)

func TestParsePortsReadsEveryWrittenForm(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"80", []uint16{80}, false},
		{"80,22", []uint16{80, 22}, false},  // X-Reflector-Ports, --ports
		{"80, 22", []uint16{80, 22}, false}, // targetPorts
		{"80 22", []uint16{80, 22}, false},  // targetPorts
		{"80;22", []uint16{80, 22}, false},  // webtunnel.ports
		{" 80 ,\t22 , 5900 ", []uint16{80, 22, 5900}, false},
		{"80, 22 443,,22", []uint16{80, 22, 443}, false},
		{"22, 80, 22, 80", []uint16{22, 80}, false},
		{"80,,22,", []uint16{80, 22}, false},
		{"1, 65535", []uint16{1, 65535}, false},
		{"", nil, false},
		{" , ", nil, false},
		{"0", nil, true},
		{"65536", nil, true},
		{"-1", nil, true},
		{"http", nil, true},
		{"80,x", nil, true},
		{"0x50", nil, true},
		{"+80", nil, true},
	} {
		got, err := ParsePorts(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormatPortsIsWhatParsePortsReads(t *testing.T) {
	ports := []uint16{80, 22, 65535}
	s := FormatPorts(ports)
	if s != "80,22,65535" {
		t.Fatalf("FormatPorts = %q", s)
	}
	if got, err := ParsePorts(s); err != nil || !slices.Equal(got, ports) {
		t.Fatalf("ParsePorts(%q) = %v, %v", s, got, err)
	}
}
