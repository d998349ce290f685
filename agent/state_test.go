package agent

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// TestStateGolden: state.json of schema 2 reads and writes back byte for
// byte (testdata/state-v2.json is the format's vector).
func TestStateGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/state-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseState(want)
	if err != nil {
		t.Fatal(err)
	}
	if st.Last == nil || st.Last.Outcome != manifests.OutcomeFailed || len(st.History) != 3 || len(st.Failed) != 1 || st.Slots["A"].Written != 16<<20 {
		t.Fatalf("parsed %+v", st)
	}
	got, _ := json.MarshalIndent(st, "", "  ")
	if string(got)+"\n" != string(want) {
		t.Fatalf("state-v2.json does not round-trip:\n%s", got)
	}
}

// TestStateV1Loads: a schema 1 state (before the history) still loads; its
// last result starts the history, and its fallback, whose image the bad
// slot names, is a failed release, so an upgraded agent does not install
// it again.
func TestStateV1Loads(t *testing.T) {
	b, err := os.ReadFile("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseState(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Schema != StateSchema || len(st.History) != 1 || st.Last == nil || st.Last.Outcome != manifests.OutcomeFellBack {
		t.Fatalf("schema %d, history %+v, last %+v", st.Schema, st.History, st.Last)
	}
	if len(st.Failed) != 1 || st.Failed[0].SHA256 != st.Slots["A"].SHA256 || st.Failed[0].Version != "2.0.0" {
		t.Fatalf("failed %+v, want 2.0.0 (slot A's image)", st.Failed)
	}
}

func TestStateNewerSchemaRefused(t *testing.T) {
	_, err := parseState([]byte(`{"schema": 3, "slots": {}}`))
	if err == nil || !strings.Contains(err.Error(), "newer than this agent understands") {
		t.Fatalf("parseState(schema 3) = %v", err)
	}
}

// TestStateBounds: the history and the failed list stay bounded, oldest
// dropped first; a failure recorded again replaces the earlier one.
func TestStateBounds(t *testing.T) {
	st := &State{}
	for i := range historyMax + 5 {
		st.record(Result{At: time.Unix(int64(i), 0), Outcome: manifests.OutcomeFailed})
	}
	if len(st.History) != historyMax || st.History[0].At.Unix() != 5 || st.Last.At.Unix() != historyMax+4 {
		t.Fatalf("history of %d from %v to %v", len(st.History), st.History[0].At, st.Last.At)
	}
	for i := range failedMax + 3 {
		st.failed(Result{SHA256: string(rune('a' + i)), Outcome: manifests.OutcomeFellBack})
	}
	st.failed(Result{SHA256: "d", Outcome: manifests.OutcomeUnhealthy})
	if len(st.Failed) != failedMax || st.Failed[0].SHA256 != "e" || st.Failed[failedMax-1].Outcome != manifests.OutcomeUnhealthy {
		t.Fatalf("failed %+v", st.Failed)
	}
	st.forget("d")
	for _, f := range st.Failed {
		if f.SHA256 == "d" {
			t.Fatal("forget kept the failure")
		}
	}
}
