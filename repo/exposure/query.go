package exposure

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
)

// Report answers an exposure query.
type Report struct {
	Query           string       `json:"query,omitempty"` // the --cve asked, "" for all
	Vulnerabilities []VulnReport `json:"vulnerabilities"`
	// PastSupport lists devices running a release whose support period
	// (custom.fw.support_until) has ended.
	PastSupport []SupportDevice `json:"past_support,omitempty"`
}

// VulnReport is one advisory's exposure.
type VulnReport struct {
	ID          string            `json:"id"`
	Aliases     []string          `json:"aliases,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Releases    []AffectedRelease `json:"releases"`
	NotAffected []VEXed           `json:"not_affected,omitempty"`
	Devices     int               `json:"devices"` // devices running an affected release
}

// AffectedRelease is a release holding an affected component version.
type AffectedRelease struct {
	Target       string         `json:"target"`
	Version      string         `json:"version"`
	Hardware     string         `json:"hardware"`
	Components   []Hit          `json:"components"`
	Devices      []string       `json:"devices"`
	Groups       map[string]int `json:"groups,omitempty"` // tag key=value → devices
	FixedBy      []string       `json:"fixed_by,omitempty"`
	SupportUntil string         `json:"support_until,omitempty"`
	PastSupport  bool           `json:"past_support,omitempty"`
}

// Hit is an affected component of a release.
type Hit struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	PURL    string   `json:"purl,omitempty"`
	Package string   `json:"package"` // the advisory's ecosystem/name
	Fixed   []string `json:"fixed,omitempty"`
}

// VEXed is a component a VEX statement marks not affected.
type VEXed struct {
	Target    string    `json:"target"`
	Component string    `json:"component"`
	Statement Statement `json:"statement"`
}

// SupportDevice is a device on a release past its support period.
type SupportDevice struct {
	Device       string `json:"device"`
	Target       string `json:"target"`
	SupportUntil string `json:"support_until"`
}

// Query answers which releases and devices are exposed to cve (an
// advisory ID or alias; "" for every stored advisory, listing only those
// that affect a release), from the stored advisories, VEX statements,
// release components and device reports.
func Query(ctx context.Context, db *inventory.DB, cve string, now time.Time) (*Report, error) {
	advs, err := db.Advisories(ctx, cve)
	if err != nil {
		return nil, err
	}
	if cve != "" && len(advs) == 0 {
		return nil, fmt.Errorf("no imported advisory has ID or alias %s; import OSV records with 'fwrepo vulns import'", cve)
	}
	rels, err := db.SBOMReleases(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := db.Running(ctx)
	if err != nil {
		return nil, err
	}
	byTarget := map[string]inventory.SBOMRelease{}
	byVersion := map[string]string{} // hardware "\x00" version → target
	for _, r := range rels {
		byTarget[r.Target] = r
		for _, hw := range strings.Split(r.Hardware, ",") {
			byVersion[hw+"\x00"+r.Version] = r.Target
		}
	}
	running := map[string][]inventory.RunningDevice{}
	for _, d := range devs {
		t := d.Target
		if _, ok := byTarget[t]; !ok {
			t = byVersion[d.Hardware+"\x00"+d.Version]
		}
		if t != "" {
			running[t] = append(running[t], d)
		}
	}
	rep := &Report{Query: cve, Vulnerabilities: []VulnReport{}}
	for _, a := range advs {
		rec, err := ParseOSV(a.Source, a.Record)
		if err != nil {
			return nil, fmt.Errorf("stored advisory %s: %w", a.ID, err)
		}
		vex, err := db.VEX(ctx, rec.Names())
		if err != nil {
			return nil, err
		}
		vr, err := exposure(ctx, db, rec, vex, byTarget, running, rels, now)
		if err != nil {
			return nil, err
		}
		if cve == "" && len(vr.Releases) == 0 {
			continue
		}
		rep.Vulnerabilities = append(rep.Vulnerabilities, *vr)
	}
	for t, ds := range running {
		r := byTarget[t]
		if end, ok := (&manifests.Firmware{SupportUntil: r.SupportUntil}).SupportEnd(); ok && !now.Before(end) {
			for _, d := range ds {
				rep.PastSupport = append(rep.PastSupport, SupportDevice{Device: d.ID, Target: t, SupportUntil: r.SupportUntil})
			}
		}
	}
	sort.Slice(rep.PastSupport, func(i, j int) bool { return rep.PastSupport[i].Device < rep.PastSupport[j].Device })
	return rep, nil
}

func exposure(ctx context.Context, db *inventory.DB, rec *Record, vex []inventory.VEXStatement, byTarget map[string]inventory.SBOMRelease,
	running map[string][]inventory.RunningDevice, rels []inventory.SBOMRelease, now time.Time) (*VulnReport, error) {
	vr := &VulnReport{ID: rec.ID, Aliases: rec.Aliases, Summary: rec.Summary, Releases: []AffectedRelease{}}
	hits := map[string][]Hit{}
	for _, a := range rec.Affected {
		comps, err := db.ComponentsNamed(ctx, a.PURLType, a.Name)
		if err != nil {
			return nil, err
		}
		for _, c := range comps {
			ok, err := a.Affects(c.Version)
			if err != nil {
				// A component version the ecosystem's order cannot read
				// is reported, not guessed.
				return nil, fmt.Errorf("%s: release %s component %s %s: %w", rec.ID, c.Target, c.Name, c.Version, err)
			}
			if !ok {
				continue
			}
			if s, ok := notAffected(vex, c.PURL); ok {
				vr.NotAffected = append(vr.NotAffected, VEXed{Target: c.Target, Component: c.PURL,
					Statement: Statement{Vuln: s.Vuln, Product: s.Product, Status: s.Status, Justification: s.Justification, Source: s.Source}})
				continue
			}
			hits[c.Target] = append(hits[c.Target], Hit{Name: c.Name, Version: c.Version, PURL: c.PURL, Package: a.Ecosystem + "/" + a.Name, Fixed: a.Fixed()})
		}
	}
	for t, hs := range hits {
		r := byTarget[t]
		ar := AffectedRelease{Target: t, Version: r.Version, Hardware: r.Hardware, Components: hs, Devices: []string{}, SupportUntil: r.SupportUntil}
		if end, ok := (&manifests.Firmware{SupportUntil: r.SupportUntil}).SupportEnd(); ok && !now.Before(end) {
			ar.PastSupport = true
		}
		for _, d := range running[t] {
			ar.Devices = append(ar.Devices, d.ID)
			for k, v := range d.Tags {
				if ar.Groups == nil {
					ar.Groups = map[string]int{}
				}
				ar.Groups[k+"="+v]++
			}
		}
		// A newer release for the same hardware without an affected
		// component fixes it.
		var fixes []inventory.SBOMRelease
		for _, o := range rels {
			if _, bad := hits[o.Target]; !bad && o.Counter > r.Counter && sharesHardware(o.Hardware, r.Hardware) {
				fixes = append(fixes, o)
			}
		}
		sort.Slice(fixes, func(i, j int) bool { return fixes[i].Counter < fixes[j].Counter })
		for _, f := range fixes {
			ar.FixedBy = append(ar.FixedBy, f.Target)
		}
		vr.Devices += len(ar.Devices)
		vr.Releases = append(vr.Releases, ar)
	}
	sort.Slice(vr.Releases, func(i, j int) bool { return vr.Releases[i].Target < vr.Releases[j].Target })
	return vr, nil
}

func sharesHardware(a, b string) bool {
	bs := strings.Split(b, ",")
	return slices.ContainsFunc(strings.Split(a, ","), func(h string) bool { return slices.Contains(bs, h) })
}

// notAffected finds a not_affected statement whose product is the
// component's purl: same type, namespace and name, and the same version
// unless the statement names none (qualifiers are ignored).
func notAffected(vex []inventory.VEXStatement, purl string) (inventory.VEXStatement, bool) {
	c, err := packageurl.FromString(purl)
	if err != nil {
		return inventory.VEXStatement{}, false
	}
	for _, s := range vex {
		if s.Status != "not_affected" {
			continue
		}
		p, err := packageurl.FromString(s.Product)
		if err != nil {
			continue
		}
		if p.Type == c.Type && p.Namespace == c.Namespace && p.Name == c.Name && (p.Version == "" || p.Version == c.Version) {
			return s, true
		}
	}
	return inventory.VEXStatement{}, false
}

// Import stores d in the inventory in one transaction.
func Import(ctx context.Context, db *inventory.DB, d *Data) error {
	advs := make([]inventory.Advisory, 0, len(d.Records))
	for _, r := range d.Records {
		advs = append(advs, inventory.Advisory{ID: r.ID, Aliases: r.Aliases, Summary: r.Summary, Source: r.Source, Record: r.Raw})
	}
	vex := make([]inventory.VEXStatement, 0, len(d.Statements))
	for _, s := range d.Statements {
		vex = append(vex, inventory.VEXStatement{Vuln: s.Vuln, Product: s.Product, Status: s.Status, Justification: s.Justification, Source: s.Source})
	}
	return db.ImportVulns(ctx, advs, vex)
}
