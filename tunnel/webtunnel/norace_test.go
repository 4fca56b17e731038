//go:build !race

package webtunnel

// raceStack is what the race detector adds to a goroutine's stack budget;
// it is off.
const raceStack = 0
