package fleetui

import (
	"reflect"
	"testing"

	"github.com/fwctl/fwctl/repo/exposure"
)

// TestExposureView: an exposure report becomes per-advisory device counts
// (most devices first, advisories affecting no device left out) and, per
// device, the advisories with the affected components of the release it
// runs and the releases that fix them.
func TestExposureView(t *testing.T) {
	rep := &exposure.Report{
		Vulnerabilities: []exposure.VulnReport{
			{ID: "CVE-1", Summary: "one", Devices: 1, Releases: []exposure.AffectedRelease{
				{Target: "hw/1.0", Devices: []string{"a"}, Components: []exposure.Hit{{Name: "curl", Version: "7"}}, FixedBy: []string{"hw/1.1"}}}},
			{ID: "CVE-2", Aliases: []string{"DSA-2"}, Devices: 3, Releases: []exposure.AffectedRelease{
				{Target: "hw/1.0", Devices: []string{"a"}, Components: []exposure.Hit{{Name: "git", Version: "2"}, {Name: "git-man", Version: "2"}}},
				{Target: "hw/1.1", Devices: []string{"b", "c"}, Components: []exposure.Hit{{Name: "git", Version: "3"}}}}},
			{ID: "CVE-3", Devices: 0, Releases: []exposure.AffectedRelease{{Target: "hw/0.9", Devices: []string{}}}},
		},
		PastSupport: []exposure.SupportDevice{{Device: "a", Target: "hw/1.0", SupportUntil: "2026-01-01"}},
	}
	e := exposureView(rep)
	var ids []string
	for _, a := range e.Advisories {
		ids = append(ids, a.ID)
	}
	if !reflect.DeepEqual(ids, []string{"CVE-2", "CVE-1"}) {
		t.Errorf("advisories %v, want CVE-2 (3 devices), CVE-1 (1); CVE-3 affects no device", ids)
	}
	a := e.ByDevice["a"]
	if len(a) != 2 || a[0].ID != "CVE-1" || !reflect.DeepEqual(a[0].Components, []string{"curl 7"}) || !reflect.DeepEqual(a[0].FixedBy, []string{"hw/1.1"}) ||
		a[1].ID != "CVE-2" || !reflect.DeepEqual(a[1].Components, []string{"git 2", "git-man 2"}) {
		t.Errorf("device a: %+v", a)
	}
	if c := e.ByDevice["c"]; len(c) != 1 || !reflect.DeepEqual(c[0].Components, []string{"git 3"}) || len(c[0].Aliases) != 1 {
		t.Errorf("device c: %+v", c)
	}
	if len(e.ByDevice) != 3 || e.PastSupport["a"] != "2026-01-01" || e.PastSupport["b"] != "" {
		t.Errorf("by device %v, past support %v", e.ByDevice, e.PastSupport)
	}
}
