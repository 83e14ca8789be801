//go:build race

package h2

func init() { raceEnabled = true }
