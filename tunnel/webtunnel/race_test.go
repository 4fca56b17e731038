//go:build race

package webtunnel

// raceStack is what the race detector adds to a goroutine's stack budget:
// it doubles the idle tunnel's (to 8 KiB).
const raceStack = 4 << 10
