package procbench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// median of xs; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteTable writes the medians as a Markdown table, one row per test and
// one column per system: rates with their share of direct's, latencies
// with what they add to direct's. Then the CPU per MB and per request of
// each measured process.
func (r *Result) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "| | %s |\n|---|%s\n", strings.Join(r.Systems, " | "), strings.Repeat("---|", len(r.Systems)))
	for i, t := range r.Tests {
		latency := r.Units[i] == "µs"
		row := []string{fmt.Sprintf("%s, %s", t, r.Units[i])}
		direct := median(r.Figures[t]["direct"])
		for _, s := range r.Systems {
			xs := r.Figures[t][s]
			if len(xs) == 0 {
				row = append(row, "—")
				continue
			}
			m := median(xs)
			cell := number(m)
			switch {
			case s == "direct" || direct == 0:
			case latency:
				cell += fmt.Sprintf(" (+%s)", number(m-direct))
			default:
				cell += fmt.Sprintf(" (%.0f %%)", 100*m/direct)
			}
			row = append(row, cell)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Requests that failed:")
		fmt.Fprintln(w)
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU time of each process of the path, medians: µs per MB carried (stream tests) or per request (HTTP tests).")
	fmt.Fprintln(w)
	var cols []string
	for _, t := range r.Tests {
		for k := range r.CPU[t] {
			if !slices.Contains(cols, k) {
				cols = append(cols, k)
			}
		}
	}
	slices.SortFunc(cols, func(a, b string) int {
		if d := slices.Index(r.Systems, systemOf(a)) - slices.Index(r.Systems, systemOf(b)); d != 0 {
			return d
		}
		return strings.Compare(b, a) // reflector before agent, server before client
	})
	if len(cols) == 0 {
		return
	}
	fmt.Fprintf(w, "| | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for i, t := range r.Tests {
		if r.Units[i] == "µs" && !strings.Contains(t, "HTTP") {
			continue // round trips and opens: too little work for a CPU figure
		}
		unit := "µs/MB"
		if strings.Contains(t, "HTTP") {
			unit = "µs/request"
		}
		row := []string{fmt.Sprintf("%s, %s", t, unit)}
		for _, c := range cols {
			if xs := r.CPU[t][c]; len(xs) > 0 {
				row = append(row, number(median(xs)))
			} else {
				row = append(row, "—")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// systemOf is the system of a CPU column's name, "system/process".
func systemOf(col string) string {
	s, _, _ := strings.Cut(col, "/")
	return s
}

// number prints x with thousands separated and a decimal only when small.
func number(x float64) string {
	neg := x < 0
	if neg {
		x = -x
	}
	var s string
	if x < 10 {
		s = fmt.Sprintf("%.1f", x)
	} else {
		digits := fmt.Sprintf("%.0f", x)
		for i, c := range digits {
			if i > 0 && (len(digits)-i)%3 == 0 {
				s += ","
			}
			s += string(c)
		}
	}
	if neg {
		return "−" + s
	}
	return s
}
