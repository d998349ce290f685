package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		n    int
		want []int
	}{
		{"one wave", Spec{}, 7, []int{7}},
		{"none", Spec{}, 0, nil},
		{"counts, rest in last", Spec{Waves: []WaveSize{{Count: 1}, {Count: 2}}}, 10, []int{1, 9}},
		{"counts cut at n", Spec{Waves: []WaveSize{{Count: 3}, {Count: 5}, {Count: 5}}}, 6, []int{3, 3}},
		{"percent rounds up", Spec{Waves: []WaveSize{{Percent: 1}, {Percent: 10}, {Percent: 100}}}, 10, []int{1, 1, 8}},
		{"percent of 10000", Spec{Waves: []WaveSize{{Percent: 1}, {Percent: 10}, {Percent: 89}}}, 10000, []int{100, 1000, 8900}},
		{"auto-split even", Spec{AutoSplit: 3}, 9, []int{3, 3, 3}},
		{"auto-split smaller first", Spec{AutoSplit: 3}, 10, []int{3, 3, 4}},
		{"auto-split more waves than devices", Spec{AutoSplit: 5}, 2, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Split(&tc.spec, tc.n); !slices.Equal(got, tc.want) {
				t.Errorf("Split = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseWaves(t *testing.T) {
	got, err := ParseWaves("1, 10%,50")
	if err != nil || !slices.Equal(got, []WaveSize{{Count: 1}, {Percent: 10}, {Count: 50}}) {
		t.Fatalf("ParseWaves = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-1", "101%", "x", "1,,2", "0%"} {
		if _, err := ParseWaves(bad); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseWaves(%q) = %v, want ErrInvalidSpec", bad, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{Target: "t", SuccessThreshold: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Spec{
		"no target":          {SuccessThreshold: 1},
		"success 0":          {Target: "t"},
		"success above 1":    {Target: "t", SuccessThreshold: 1.5},
		"failure 1":          {Target: "t", SuccessThreshold: 1, FailureThreshold: 1},
		"both waves & split": {Target: "t", SuccessThreshold: 1, AutoSplit: 2, Waves: []WaveSize{{Count: 1}}},
		"bad tag":            {Target: "t", SuccessThreshold: 1, Filter: map[string]string{"a b": "c"}},
		"bad value":          {Target: "t", SuccessThreshold: 1, Filter: map[string]string{"a": "x=y"}},
	} {
		if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Validate = %v, want ErrInvalidSpec", name, err)
		}
	}
}

// devs builds devices from phases per wave: "pa" is wave 0 with one
// pending and one assigned device (p pending, a assigned, d deferred,
// i installing, s succeeded, f failed, w withdrawn).
func devs(waves ...string) []Device {
	ph := map[byte]Phase{'p': Pending, 'a': Assigned, 'd': Deferred, 'i': Installing, 's': Succeeded, 'f': Failed, 'w': Withdrawn}
	var out []Device
	for w, s := range waves {
		for i := range len(s) {
			out = append(out, Device{ID: string(rune('a'+w)) + string(rune('0'+i)), Wave: w, Phase: ph[s[i]], Error: "boom"})
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	spec := Spec{Target: "t", SuccessThreshold: 1, FailureThreshold: 0.2}
	half := Spec{Target: "t", SuccessThreshold: 0.5, FailureThreshold: 0.5}
	for _, tc := range []struct {
		name         string
		spec         Spec
		st           State
		devs         []Device
		assign, with []string
		next         State
		reason       string
	}{
		{"created does nothing", spec, State{Status: Created, Waves: 2}, devs("pp", "pp"), nil, nil, State{Status: Created, Waves: 2}, ""},
		{"start assigns wave 1", spec, State{Status: Running, Waves: 2}, devs("pp", "pp"), []string{"a0", "a1"}, nil, State{Status: Running, Waves: 2}, ""},
		{"waiting", spec, State{Status: Running, Waves: 2}, devs("si", "pp"), nil, nil, State{Status: Running, Waves: 2}, ""},
		{"deferred is not success", spec, State{Status: Running, Waves: 2}, devs("sd", "pp"), nil, nil, State{Status: Running, Waves: 2}, ""},
		{"deferred is not failure", Spec{Target: "t", SuccessThreshold: 1}, State{Status: Running, Waves: 2}, devs("dd", "pp"), nil, nil, State{Status: Running, Waves: 2}, ""},
		{"advance", spec, State{Status: Running, Waves: 3}, devs("ss", "pp", "pp"), []string{"b0", "b1"}, nil, State{Status: Running, Wave: 1, Waves: 3}, ""},
		{"advance over a done wave", spec, State{Status: Running, Waves: 3}, devs("ss", "ss", "pp"), []string{"c0", "c1"}, nil, State{Status: Running, Wave: 2, Waves: 3}, ""},
		{"threshold below 1", half, State{Status: Running, Waves: 2}, devs("ssf", "pp"), []string{"b0", "b1"}, nil, State{Status: Running, Wave: 1, Waves: 2}, ""},
		{"failure at threshold continues", half, State{Status: Running, Waves: 2}, devs("ssff", "pp"), []string{"b0", "b1"}, nil, State{Status: Running, Wave: 1, Waves: 2}, ""},
		{"halt above threshold", spec, State{Status: Running, Wave: 1, Waves: 3}, devs("ss", "fsda", "pp"), nil, []string{"b2", "b3"},
			State{Status: Halted, Wave: 1, Waves: 3}, "wave 2: 1 of 4 devices failed (25%), above the failure threshold 20% (b0: boom)"},
		{"complete", spec, State{Status: Running, Wave: 1, Waves: 2}, devs("ss", "ss"), nil, nil, State{Status: Completed, Wave: 1, Waves: 2}, "all 2 waves reached the success threshold (100%)"},
		{"pause withdraws not started", spec, State{Status: Paused, Wave: 1, Waves: 3}, devs("ss", "iad", "pp"), nil, []string{"b1", "b2"}, State{Status: Paused, Wave: 1, Waves: 3}, ""},
		{"abort withdraws", spec, State{Status: Aborted, Waves: 1}, devs("aifs"), nil, []string{"a0"}, State{Status: Aborted, Waves: 1}, ""},
		{"halted again asks nothing", spec, State{Status: Halted, Waves: 2}, devs("fw", "pp"), nil, nil, State{Status: Halted, Waves: 2}, ""},
		{"completed", spec, State{Status: Completed, Waves: 1}, devs("s"), nil, nil, State{Status: Completed, Waves: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(&tc.spec, tc.st, tc.devs)
			if !slices.Equal(d.Assign, tc.assign) || !slices.Equal(d.Withdraw, tc.with) || d.Next != tc.next {
				t.Errorf("Decide = assign %v withdraw %v next %+v, want %v %v %+v", d.Assign, d.Withdraw, d.Next, tc.assign, tc.with, tc.next)
			}
			if tc.reason != "" && d.Reason != tc.reason {
				t.Errorf("reason %q, want %q", d.Reason, tc.reason)
			}
			if tc.next.Status == Running && strings.Contains(d.Reason, "halt") {
				t.Errorf("reason %q on a running rollout", d.Reason)
			}
		})
	}
}

func TestPhaseOf(t *testing.T) {
	for o, want := range map[string]Phase{"": Assigned, "deferred": Deferred, "installed": Installing, "confirmed": Succeeded,
		"failed": Failed, "fell-back": Failed, "unhealthy": Failed, "something-new": Assigned} {
		if got := PhaseOf(o); got != want {
			t.Errorf("PhaseOf(%q) = %s, want %s", o, got, want)
		}
	}
}

func TestTransition(t *testing.T) {
	for _, tc := range []struct {
		st       Status
		action   string
		approval bool
		want     Status
		ok       bool
	}{
		{Created, Start, false, Running, true},
		{Created, Start, true, WaitingApproval, true},
		{WaitingApproval, Approve, true, Running, true},
		{Created, Approve, true, Created, false},
		{Running, Approve, true, Running, false},
		{Running, Pause, false, Paused, true},
		{Paused, Resume, false, Running, true},
		{Running, Resume, false, Running, false},
		{Halted, Resume, false, Halted, false},
		{Halted, Abort, false, Halted, false},
		{Paused, Abort, false, Aborted, true},
		{WaitingApproval, Abort, true, Aborted, true},
		{Completed, Start, false, Completed, false},
	} {
		got, err := Transition(tc.st, tc.action, tc.approval)
		if got != tc.want || (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrTransition) {
			t.Errorf("Transition(%s, %s, %v) = %s, %v; want %s ok=%v", tc.st, tc.action, tc.approval, got, err, tc.want, tc.ok)
		}
	}
}

func TestCheckApprover(t *testing.T) {
	for _, tc := range []struct {
		creator, approver string
		ok                bool
	}{
		{"alice", "bob", true},
		{Anonymous, "bob", true},
		{"", "bob", true},
		{"alice", "alice", false},     // the creator cannot approve their own rollout
		{Anonymous, Anonymous, false}, // nor can an anonymous CLI user
		{"alice", Anonymous, false},   // an approval needs a name
		{"alice", "", false},
		{"alice", "Alice", true}, // token names are compared exactly
	} {
		err := CheckApprover(tc.creator, tc.approver)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrApproval) {
			t.Errorf("CheckApprover(%q, %q) = %v, want ok=%v", tc.creator, tc.approver, err, tc.ok)
		}
	}
}
