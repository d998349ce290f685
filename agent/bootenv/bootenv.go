// Package bootenv owns bootloader environments: the flat set of string
// variables a bootloader reads at boot to choose a slot. It reads and writes
// them in the bootloader's own on-disk format and never decides which slot to
// boot (that is package boot's job).
package bootenv

import (
	"errors"
	"sort"
)

// Env is a bootloader environment. Save replaces the whole variable set and is
// atomic with respect to power loss for every backend: after a crash the
// bootloader sees either the old set or the new one.
type Env interface {
	// Load returns the current variables. A missing or blank environment
	// yields an empty map, not an error.
	Load() (map[string]string, error)
	// Save atomically replaces the environment with vars.
	Save(vars map[string]string) error
}

// ErrInvalid reports an environment whose bytes are not valid for its format
// (bad CRC, wrong size, malformed line).
var ErrInvalid = errors.New("bootenv: invalid environment")

// sortedKeys returns the keys of vars in a stable order, so that every backend
// writes byte-identical output for identical input.
func sortedKeys(vars map[string]string) []string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
