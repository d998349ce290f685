package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/internal/atomicfile"
	"github.com/fwctl/fwctl/manifests"
)

// StateSchema is the state.json format this agent writes. Schema 1 (no
// "schema" member) had no history and no failed releases; it still loads.
const StateSchema = 2

// Bounds of the lists in state.json (and so in device reports).
const (
	historyMax = 16 // attempts kept, oldest dropped first
	failedMax  = 8  // failed releases kept
)

// SlotState is what the agent knows about a slot's contents.
type SlotState struct {
	Status string `json:"status"`
	manifests.Image
	// Written is, while Status is "writing", how many bytes are durably in
	// the slot: an interrupted install resumes from there.
	Written int64 `json:"written,omitempty"`
}

// Install is an installed, not yet confirmed update.
type Install struct {
	Slot string `json:"slot"`
	manifests.Image
	At time.Time `json:"at"`
}

// Result records the outcome of one install attempt.
type Result struct {
	At      time.Time `json:"at"`
	Target  string    `json:"target,omitempty"`
	Version string    `json:"version,omitempty"`
	SHA256  string    `json:"sha256,omitempty"`
	Outcome string    `json:"outcome"` // installed, confirmed, fell-back, unhealthy, failed
	Error   string    `json:"error,omitempty"`
}

// State is the agent's persistent state (state.json).
type State struct {
	Schema  int                   `json:"schema"`
	Slots   map[string]*SlotState `json:"slots"`
	Pending *Install              `json:"pending,omitempty"`
	// Last is the newest entry of History.
	Last *Result `json:"last,omitempty"`
	// History is the bounded list of install attempts, oldest first.
	History []Result `json:"history,omitempty"`
	// Failed lists releases that failed on this device and are not
	// installed again without 'fwagent update --retry'.
	Failed []policy.Failure `json:"failed,omitempty"`
	// Checkpoint is the newest transparency-log checkpoint accepted; a
	// proof against an older tree is refused.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// record appends an attempt's outcome to the history.
func (st *State) record(r Result) {
	st.History = append(st.History, r)
	if n := len(st.History); n > historyMax {
		st.History = append([]Result(nil), st.History[n-historyMax:]...)
	}
	st.Last = &st.History[len(st.History)-1]
}

// failed records r's release as failed: not to be installed again
// automatically.
func (st *State) failed(r Result) {
	st.forget(r.SHA256)
	st.Failed = append(st.Failed, policy.Failure{Target: r.Target, Version: r.Version, SHA256: r.SHA256,
		Outcome: r.Outcome, Reason: r.Error, At: r.At})
	if n := len(st.Failed); n > failedMax {
		st.Failed = append([]policy.Failure(nil), st.Failed[n-failedMax:]...)
	}
}

// forget drops the failure record of the image with this SHA-256.
func (st *State) forget(sha string) {
	out := st.Failed[:0]
	for _, f := range st.Failed {
		if f.SHA256 != sha {
			out = append(out, f)
		}
	}
	st.Failed = out
	if len(st.Failed) == 0 {
		st.Failed = nil
	}
}

func (a *Agent) statePath() string { return filepath.Join(a.cfg.StateDir, "state.json") }

func (a *Agent) loadState() (*State, error) {
	b, err := os.ReadFile(a.statePath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var st *State
	if err == nil {
		if st, err = parseState(b); err != nil {
			return nil, fmt.Errorf("%s: %w", a.statePath(), err)
		}
	} else {
		st = &State{Schema: StateSchema, Slots: map[string]*SlotState{}}
	}
	for _, s := range a.cfg.SlotNames() {
		if st.Slots[s] == nil {
			st.Slots[s] = &SlotState{Status: manifests.SlotUnknown}
		}
	}
	return st, nil
}

// parseState decodes state.json, bringing schema 1 up to date: its last
// result starts the history, and a fallback or an unhealthy slot it
// recorded becomes a failed release (the bad slot still names its image),
// so an agent upgraded after a fallback does not install it again.
func parseState(b []byte) (*State, error) {
	st := &State{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("corrupt state file: %w", err)
	}
	switch {
	case st.Schema > StateSchema:
		return nil, fmt.Errorf("state schema %d is newer than this agent understands (%d): a newer fwagent wrote it; install that one again", st.Schema, StateSchema)
	case st.Schema < 2:
		st.Schema = StateSchema
		if l := st.Last; l != nil {
			if l.Outcome == manifests.OutcomeFellBack || l.Outcome == manifests.OutcomeUnhealthy {
				for _, s := range st.Slots {
					if s != nil && s.Status == manifests.SlotBad && s.Target == l.Target && s.SHA256 != "" {
						l.SHA256 = s.SHA256
					}
				}
			}
			st.History = nil
			st.record(*l)
			if l.SHA256 != "" {
				st.failed(*l)
			}
		}
	}
	if st.Slots == nil {
		st.Slots = map[string]*SlotState{}
	}
	if n := len(st.History); n > 0 {
		st.Last = &st.History[n-1]
	}
	return st, nil
}

func (a *Agent) saveState(st *State) error {
	st.Schema = StateSchema
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(a.statePath(), append(b, '\n'), 0o600)
}
