package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/swarm"
)

// TestSwarmConnectsAndSurvivesSIGKILL runs the fleet-scale benchmark
// (integration/swarm, docs/performance.md "Fleet scale") small: 50 agents
// of each wire against the built reflector, which is killed with SIGKILL
// once all are connected and started again on the same data; every agent
// must connect, as the agents and the reflector's /metrics both count, and
// every one must be back after the restart.
func TestSwarmConnectsAndSurvivesSIGKILL(t *testing.T) {
	const devices = 50
	cache := t.TempDir() // both wires use the one provisioned fleet
	for _, wire := range []swarm.Wire{swarm.Ours, swarm.WebTunnel} {
		t.Run(string(wire), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := swarm.Run(ctx, swarm.Config{
				Devices:   devices,
				Wire:      wire,
				Secrets:   swarm.Generated,
				Reflector: filepath.Join(binDir, "reflector"),
				Cache:     cache,
				WorkDir:   t.TempDir(),
				Restart:   true,
				Idle:      500 * time.Millisecond,
				Timeout:   20 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range map[string]*swarm.Storm{"cold start": &res.Cold, "after the SIGKILL": res.Restart} {
				if s == nil {
					t.Fatalf("%s: no figures", name)
				}
				if s.Connected != devices || s.Reflector != devices {
					t.Errorf("%s: %d agents connected, the reflector counts %d, want %d", name, s.Connected, s.Reflector, devices)
				}
				if s.PeakRSSKiB <= 0 || s.RSSKiB <= 0 || s.RSSKiB > s.PeakRSSKiB {
					t.Errorf("%s: RSS %d KiB, peak %d KiB: not read from /proc", name, s.RSSKiB, s.PeakRSSKiB)
				}
			}
			// Both read, not compared: 50 devices are a few hundred KiB,
			// less than what the process returns to the system after the
			// argon2id calibration at its start.
			if res.BaseRSSKiB <= 0 || res.Idle.RSSKiB <= 0 {
				t.Errorf("RSS %d KiB before the agents and %d KiB with them: not read from /proc", res.BaseRSSKiB, res.Idle.RSSKiB)
			}
			if res.Idle.Drops != 0 {
				t.Errorf("%d tunnels dropped while idle", res.Idle.Drops)
			}
			t.Logf("cold %.1f s, restart %.1f s (%d failed attempts), %.0f KiB per device",
				res.Cold.Seconds, res.Restart.Seconds, res.Restart.Failures, res.Idle.PerDeviceKiB)
		})
	}
}
