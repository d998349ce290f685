package manifests

import (
	"errors"
	"testing"
)

// TestDirectorPick: the device rule the agent, the site mirror and fwctl
// bundle share.
func TestDirectorPick(t *testing.T) {
	bind := func(dev string) []byte { b, _ := MarshalBinding(dev); return b }
	assigned := func(dev string) DirectorTarget {
		return DirectorTarget{Path: "fw.img", Custom: []byte(`{"director":{"schema":1,"device":"` + dev + `","hardware":"gw","counter":3}}`)}
	}
	tests := []struct {
		name string
		set  DirectorSet
		want error
		path string
	}{
		{"assigned", DirectorSet{Binding: bind("d1"), HashChained: true, Targets: []DirectorTarget{assigned("d1")}}, nil, "fw.img"},
		{"nothing assigned", DirectorSet{Binding: bind("d1"), HashChained: true}, nil, ""},
		{"format 1 (no binding)", DirectorSet{HashChained: true, Targets: []DirectorTarget{assigned("d1")}}, ErrInvalidAssignment, ""},
		{"another device's empty targets", DirectorSet{Binding: bind("d2"), HashChained: true}, ErrInvalidAssignment, ""},
		{"newer binding schema", DirectorSet{Binding: []byte(`{"device":"d1","schema":99}`), HashChained: true}, ErrUnsupportedSchema, ""},
		{"not hash-chained", DirectorSet{Binding: bind("d1"), Targets: []DirectorTarget{assigned("d1")}}, ErrInvalidAssignment, ""},
		{"two targets", DirectorSet{Binding: bind("d1"), HashChained: true, Targets: []DirectorTarget{assigned("d1"), assigned("d1")}}, ErrInvalidAssignment, ""},
		{"delegations", DirectorSet{Binding: bind("d1"), HashChained: true, Delegations: true, Targets: []DirectorTarget{assigned("d1")}}, ErrInvalidAssignment, ""},
		{"assigned to another device", DirectorSet{Binding: bind("d1"), HashChained: true, Targets: []DirectorTarget{assigned("d2")}}, ErrInvalidAssignment, ""},
		{"no assignment", DirectorSet{Binding: bind("d1"), HashChained: true, Targets: []DirectorTarget{{Path: "fw.img"}}}, ErrInvalidAssignment, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, a, err := DirectorPick(tt.set, "d1")
			if !errors.Is(err, tt.want) {
				t.Fatalf("DirectorPick = %v, want %v", err, tt.want)
			}
			switch {
			case err != nil && (tg != nil || a != nil):
				t.Fatalf("refused but returned %+v %+v", tg, a)
			case err == nil && tt.path == "" && tg != nil:
				t.Fatalf("nothing assigned, got %+v", tg)
			case err == nil && tt.path != "" && (tg == nil || tg.Path != tt.path || a.Device != "d1"):
				t.Fatalf("got %+v %+v, want %s", tg, a, tt.path)
			}
		})
	}
}
