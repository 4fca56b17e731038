package tunnel

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
)

// OpenResult is how a stream open ended, for the hub's counters.
type OpenResult int

// The results of Hub.Dial, in the order KindMetrics.Opens counts them.
const (
	OpenOK OpenResult = iota
	OpenNotAllowed
	OpenRefused
	OpenTimeout
	OpenFailed // the device reported another failure, or the tunnel broke
	OpenBusy   // refused by the hub: the device had MaxDeviceStreams streams
	numOpenResults
)

// String is the result's label: ok, not_allowed, refused, timeout, failed,
// busy.
func (r OpenResult) String() string {
	return [...]string{"ok", "not_allowed", "refused", "timeout", "failed", "busy"}[r]
}

// OpenResults lists every OpenResult, for exporters.
func OpenResults() []OpenResult {
	return []OpenResult{OpenOK, OpenNotAllowed, OpenRefused, OpenTimeout, OpenFailed, OpenBusy}
}

func openResult(err error) OpenResult {
	switch {
	case err == nil:
		return OpenOK
	case errors.Is(err, ErrPortNotAllowed):
		return OpenNotAllowed
	case errors.Is(err, ErrDeviceBusy):
		return OpenBusy
	case errors.Is(err, ErrRefused):
		return OpenRefused
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return OpenTimeout
	default:
		return OpenFailed
	}
}

// kindStats are the counters of one wire kind. Counters of a connected
// device live in its own connected record (so streams of different devices
// never share a cache line) and are added here when its tunnel ends.
type kindStats struct {
	connects atomic.Int64
	opens    [numOpenResults]atomic.Int64
	// Totals of the devices whose tunnels have ended.
	retiredIn, retiredOut atomic.Int64
}

// KindMetrics is a snapshot of the hub's counters for one wire kind since
// the hub was made. Counters only grow; Connected and OpenStreams are now.
type KindMetrics struct {
	Kind        string
	Connected   int64 // devices connected now
	Connects    int64 // tunnels registered, replaced ones included
	OpenStreams int64 // streams open now
	Opens       [numOpenResults]int64
	BytesIn     int64 // from devices to users
	BytesOut    int64 // from users to devices
}

// Metrics returns the counters of every wire kind seen, and of both known
// kinds always, sorted by kind; offline counts opens of devices that were
// not connected (they have no kind).
func (h *Hub) Metrics() (kinds []KindMetrics, offline int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	byKind := make(map[string]*KindMetrics, len(h.kinds))
	for name, k := range h.kinds {
		m := &KindMetrics{
			Kind:     name,
			Connects: k.connects.Load(),
			BytesIn:  k.retiredIn.Load(),
			BytesOut: k.retiredOut.Load(),
		}
		for i := range m.Opens {
			m.Opens[i] = k.opens[i].Load()
		}
		byKind[name] = m
	}
	for _, c := range h.devices {
		m := byKind[c.info.Load().Kind]
		m.Connected++
		m.OpenStreams += c.streams.Load()
		m.BytesIn += c.bytesIn.Load()
		m.BytesOut += c.bytesOut.Load()
	}
	for _, m := range byKind {
		kinds = append(kinds, *m)
	}
	slices.SortFunc(kinds, func(a, b KindMetrics) int { return strings.Compare(a.Kind, b.Kind) })
	return kinds, h.offline.Load()
}
