package tunnel

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParsePorts: ParsePorts never panics; a list it accepts has no zero
// and no duplicate, each of its ports reads back from its decimal text
// alone, and the list written back ("80,22") reads back the same. A
// refused list returns no ports.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{
		"80", "80,22", "80, 22", "80 22", "80;22", " 80 ,\t22 , 5900 ",
		"22, 80, 22, 80", "80,,22,", "1, 65535", "", " , ",
		"0", "65536", "-1", "+80", "0x50", "080", "8_0", "80,x", "٨٠",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if ports != nil {
				t.Fatalf("ParsePorts(%q) refused (%v) but returned %v", s, err, ports)
			}
			return
		}
		texts := make([]string, len(ports))
		for i, p := range ports {
			if p == 0 {
				t.Fatalf("ParsePorts(%q) = %v: port 0", s, ports)
			}
			if slices.Contains(ports[:i], p) {
				t.Fatalf("ParsePorts(%q) = %v: %d twice", s, ports, p)
			}
			texts[i] = strconv.Itoa(int(p))
			if one, err := ParsePorts(texts[i]); err != nil || !slices.Equal(one, []uint16{p}) {
				t.Fatalf("ParsePorts(%q) = %v, but ParsePorts(%q) = %v, %v", s, ports, texts[i], one, err)
			}
		}
		joined := strings.Join(texts, ",")
		if again, err := ParsePorts(joined); err != nil || !slices.Equal(again, ports) {
			t.Fatalf("ParsePorts(%q) = %v, but ParsePorts(%q) = %v, %v", s, ports, joined, again, err)
		}
	})
}
