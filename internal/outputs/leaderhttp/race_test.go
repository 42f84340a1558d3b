//go:build race

package leaderhttp

const raceEnabled = true
