package swarm

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteSummary writes the figures of res as a table.
func (res *Result) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "swarm: %d devices, wire %s, secrets %s, reflector %s\n", res.Devices, res.Wire, res.Secrets, res.Reflector)
	if res.ProvisionSeconds > 0 {
		fmt.Fprintf(w, "provisioned in %.1f s\n", res.ProvisionSeconds)
	}
	if res.Cold.Connected == 0 && res.Cold.Seconds == 0 {
		return // provisioned only, or stopped before the agents started
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	storms := []*Storm{&res.Cold}
	fmt.Fprint(tw, "\tcold start\t")
	if res.Restart != nil {
		storms = append(storms, res.Restart)
		fmt.Fprint(tw, "after SIGKILL\t")
	}
	fmt.Fprintln(tw)
	row := func(name string, f func(s *Storm) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, s := range storms {
			fmt.Fprintf(tw, "%s\t", f(s))
		}
		fmt.Fprintln(tw)
	}
	row("connected", func(s *Storm) string { return fmt.Sprintf("%d/%d", s.Connected, res.Devices) })
	row("  as the reflector counts", func(s *Storm) string {
		if s.Reflector < 0 {
			return "-"
		}
		return fmt.Sprint(s.Reflector)
	})
	row("time until all connected", func(s *Storm) string { return fmt.Sprintf("%.1f s", s.Seconds) })
	if res.Restart != nil {
		row("  since the SIGKILL", func(s *Storm) string {
			if s == &res.Cold {
				return "-"
			}
			return fmt.Sprintf("%.1f s", s.SinceKillSeconds)
		})
	}
	row("failed attempts", func(s *Storm) string { return fmt.Sprint(s.Failures) })
	row("peak RSS (VmHWM)", func(s *Storm) string { return mib(s.PeakRSSKiB) })
	row("RSS when all connected", func(s *Storm) string { return mib(s.RSSKiB) })
	row("reflector CPU", func(s *Storm) string { return fmt.Sprintf("%.1f s", s.CPUSeconds) })
	row("the swarm's own CPU", func(s *Storm) string { return fmt.Sprintf("%.1f s", s.SwarmCPUSeconds) })
	tw.Flush()

	if i := res.Idle; i.Seconds > 0 {
		fmt.Fprintf(w, "idle %.0f s: reflector CPU %.2f %% of a core, RSS %s (%s before any agent), %.1f KiB per device, %d tunnels dropped\n",
			i.Seconds, i.CPUPercent, mib(i.RSSKiB), mib(res.BaseRSSKiB), i.PerDeviceKiB, i.Drops)
	}
	for _, s := range storms {
		name := "cold start"
		if s != &res.Cold {
			name = "after SIGKILL"
		}
		for _, k := range s.FailureKinds {
			fmt.Fprintf(w, "failed attempts, %s: %s\n", name, k)
		}
	}
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
