//go:build !race

package lirs

// raceEnabled reports whether tests run under the race detector, which makes
// them about ten times slower: long tests scale down.
const raceEnabled = false
