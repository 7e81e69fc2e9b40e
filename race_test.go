//go:build race

package caddymcpo

func init() { raceEnabled = true }
