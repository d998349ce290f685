package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fwctl/fwctl/internal/atomicfile"
)

// Slot statuses kept in the state file.
const (
	SlotUnknown   = "unknown"   // never written by the agent (factory image)
	SlotWriting   = "writing"   // being written: never bootable
	SlotInstalled = "installed" // written and verified, to be tried
	SlotGood      = "good"      // booted and confirmed
	SlotBad       = "bad"       // tried and never confirmed
)

// SlotState is what the agent knows about a slot's contents.
type SlotState struct {
	Status  string `json:"status"`
	Target  string `json:"target,omitempty"`
	Version string `json:"version,omitempty"`
	Counter uint64 `json:"counter,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Length  int64  `json:"length,omitempty"`
	// Written is, while Status is "writing", how many bytes are durably in
	// the slot: an interrupted install resumes from there.
	Written int64 `json:"written,omitempty"`
}

// Install is an installed, not yet confirmed update.
type Install struct {
	Slot    string    `json:"slot"`
	Target  string    `json:"target"`
	Version string    `json:"version"`
	Counter uint64    `json:"counter"`
	SHA256  string    `json:"sha256"`
	Length  int64     `json:"length"`
	At      time.Time `json:"at"`
}

// Result records the outcome of the last install attempt.
type Result struct {
	At      time.Time `json:"at"`
	Target  string    `json:"target,omitempty"`
	Version string    `json:"version,omitempty"`
	Outcome string    `json:"outcome"` // installed, confirmed, fell-back, failed
	Error   string    `json:"error,omitempty"`
}

// State is the agent's persistent state (state.json).
type State struct {
	Slots   map[string]*SlotState `json:"slots"`
	Pending *Install              `json:"pending,omitempty"`
	Last    *Result               `json:"last,omitempty"`
	// Checkpoint is the newest transparency-log checkpoint accepted; a
	// proof against an older tree is refused.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

func (a *Agent) statePath() string { return filepath.Join(a.cfg.StateDir, "state.json") }

func (a *Agent) loadState() (*State, error) {
	st := &State{Slots: map[string]*SlotState{}}
	b, err := os.ReadFile(a.statePath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("%s is corrupt: %w", a.statePath(), err)
		}
	}
	for _, s := range a.cfg.SlotNames() {
		if st.Slots[s] == nil {
			st.Slots[s] = &SlotState{Status: SlotUnknown}
		}
	}
	return st, nil
}

func (a *Agent) saveState(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(a.statePath(), append(b, '\n'), 0o600)
}
