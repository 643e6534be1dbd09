//go:build race

package worker_test

// raceEnabled shrinks the tests too slow under the race detector.
const raceEnabled = true
