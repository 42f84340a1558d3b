//go:build !race

package leaderhttp

const raceEnabled = false
