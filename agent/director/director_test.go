package director

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fwctl/fwctl/agent/tuf"
)

func TestPick(t *testing.T) {
	custom := func(s string) *json.RawMessage { r := json.RawMessage(s); return &r }
	ok := custom(`{"director":{"schema":1,"device":"dev-1","hardware":"gw","counter":3}}`)
	tf := func(c *json.RawMessage) *tuf.TargetFile {
		return &tuf.TargetFile{Length: 10, Hashes: map[string]tuf.HexBytes{"sha256": {0xab}}, Custom: c}
	}
	tests := []struct {
		name    string
		targets map[string]*tuf.TargetFile
		deleg   *tuf.Delegations
		bind    string // the targets' "director" binding; default dev-1's
		want    error
		none    bool
	}{
		{name: "one target for this device", targets: map[string]*tuf.TargetFile{"gw/1/fw.img": tf(ok)}},
		{name: "nothing assigned", targets: map[string]*tuf.TargetFile{}, none: true},
		{name: "two targets", targets: map[string]*tuf.TargetFile{"a": tf(ok), "b": tf(ok)}, want: ErrRefused},
		{name: "delegations", targets: map[string]*tuf.TargetFile{"a": tf(ok)}, deleg: &tuf.Delegations{}, want: ErrRefused},
		{name: "another device", targets: map[string]*tuf.TargetFile{"a": tf(custom(`{"director":{"schema":1,"device":"dev-2","hardware":"gw","counter":3}}`))}, want: ErrRefused},
		{name: "no assignment", targets: map[string]*tuf.TargetFile{"a": tf(nil)}, want: ErrRefused},
		{name: "another device's empty targets", targets: map[string]*tuf.TargetFile{}, bind: `{"device":"dev-2","schema":2}`, want: ErrRefused},
		{name: "another device's binding", targets: map[string]*tuf.TargetFile{"gw/1/fw.img": tf(ok)}, bind: `{"device":"dev-2","schema":2}`, want: ErrRefused},
		{name: "no binding (format 1)", targets: map[string]*tuf.TargetFile{}, bind: "-", want: ErrRefused},
		{name: "newer format", targets: map[string]*tuf.TargetFile{}, bind: `{"device":"dev-1","schema":3}`, want: ErrRefused},
		{name: "newer schema", targets: map[string]*tuf.TargetFile{"a": tf(custom(`{"director":{"schema":9,"device":"dev-1","hardware":"gw","counter":3}}`))}, want: ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bind := json.RawMessage(`{"device":"dev-1","schema":2}`)
			switch tt.bind {
			case "-":
				bind = nil
			case "":
			default:
				bind = json.RawMessage(tt.bind)
			}
			hashed := func() map[string]*tuf.MetaFile {
				return map[string]*tuf.MetaFile{"snapshot.json": {Version: 2, Hashes: map[string]tuf.HexBytes{"sha256": {1}}},
					"targets.json": {Version: 2, Hashes: map[string]tuf.HexBytes{"sha256": {2}}}}
			}
			set := &tuf.Trusted{Timestamp: &tuf.Timestamp{Common: tuf.Common{Version: 4}, Meta: hashed()},
				Snapshot: &tuf.Snapshot{Common: tuf.Common{Version: 2}, Meta: hashed()},
				Targets:  &tuf.Targets{Common: tuf.Common{Version: 2}, Targets: tt.targets, Delegations: tt.deleg, Director: bind}}
			a, err := Pick(set, "dev-1")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Pick = %+v, %v; want %v", a, err, tt.want)
			}
			if err != nil {
				return
			}
			if tt.none != (a == nil) {
				t.Fatalf("Pick = %+v", a)
			}
			if a != nil && (a.Path != "gw/1/fw.img" || a.Counter != 3 || a.Hashes["sha256"] != "ab" || a.TargetsVersion != 2 || a.TimestampVersion != 4) {
				t.Fatalf("Pick = %+v", a)
			}
		})
	}
}
